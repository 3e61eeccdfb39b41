# The environment of porch's end-to-end test (tests/tests/puppet_stack.rs), written to
# Puppet Server's codedir as environments/porch_e2e with @STAMP_DIR@ replaced by the test's
# directory. Puppet Server reads this file: each agent identity gets its component from
# ordinary classification; porch orders the runs from orchestration/, which Puppet never reads.
node 'e2e-agent1' {
  porch_e2e::db { 'e2e': stamp => '@STAMP_DIR@/e2e-agent1' }
}
node 'e2e-agent2' {
  porch_e2e::app { 'e2e-a': stamp => '@STAMP_DIR@/e2e-agent2' }
}
node 'e2e-agent3' {
  porch_e2e::app { 'e2e-b': stamp => '@STAMP_DIR@/e2e-agent3' }
}
node 'e2e-agent4' {
  porch_e2e::web { 'e2e-a': stamp => '@STAMP_DIR@/e2e-agent4' }
}
node 'e2e-agent5' {
  porch_e2e::web { 'e2e-b': stamp => '@STAMP_DIR@/e2e-agent5' }
}
node default { }
