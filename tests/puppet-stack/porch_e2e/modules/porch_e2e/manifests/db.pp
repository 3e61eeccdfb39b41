# The db tier of the end-to-end application: one stamped step.
define porch_e2e::db (String $stamp) {
  porch_e2e::step { "db ${name}": stamp => $stamp }
}
