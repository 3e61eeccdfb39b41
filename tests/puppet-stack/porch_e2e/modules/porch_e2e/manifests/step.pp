# One node's part of the end-to-end application: writes the time of the run (nanoseconds since
# the epoch) to $stamp. While "${stamp}.fail" exists the gate fails, so the stamp is not
# written and the run reports a failed resource.
define porch_e2e::step (String $stamp) {
  exec { "porch_e2e gate ${name}":
    command => "/bin/sh -c 'test ! -e ${stamp}.fail'",
  }
  exec { "porch_e2e stamp ${name}":
    command => "/bin/sh -c 'date +%s%N > ${stamp}'",
    require => Exec["porch_e2e gate ${name}"],
  }
}
