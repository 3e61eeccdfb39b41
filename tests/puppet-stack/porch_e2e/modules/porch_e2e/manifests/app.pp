# The app tier of the end-to-end application: one stamped step.
define porch_e2e::app (String $stamp) {
  porch_e2e::step { "app ${name}": stamp => $stamp }
}
