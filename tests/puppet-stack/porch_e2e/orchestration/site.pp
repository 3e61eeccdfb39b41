# Which identity runs which component; each still gets it from manifests/site.pp.
site {
  shop { 'e2e':
    nodes => {
      Node['e2e-agent1'] => Porch_e2e::Db['e2e'],
      Node['e2e-agent2'] => Porch_e2e::App['e2e-a'],
      Node['e2e-agent3'] => Porch_e2e::App['e2e-b'],
      Node['e2e-agent4'] => Porch_e2e::Web['e2e-a'],
      Node['e2e-agent5'] => Porch_e2e::Web['e2e-b'],
    },
  }
}
