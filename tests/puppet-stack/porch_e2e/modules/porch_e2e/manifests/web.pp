# The web tier of the end-to-end application: one stamped step.
define porch_e2e::web (String $stamp) {
  porch_e2e::step { "web ${name}": stamp => $stamp }
}
