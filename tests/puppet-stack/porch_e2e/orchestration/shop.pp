# porch reads this directory; Puppet Server never does (Puppet >= 6 cannot parse
# `application` or capability mappings). Three levels: the database, two app servers that
# consume it, and a web server per app server.
application shop {
  porch_e2e::db { $name: export => Sql["shop-${name}"] }
  porch_e2e::app { "${name}-a":
    consume => Sql["shop-${name}"],
    export  => Http["shop-${name}-a"],
  }
  porch_e2e::app { "${name}-b":
    consume => Sql["shop-${name}"],
    export  => Http["shop-${name}-b"],
  }
  porch_e2e::web { "${name}-a": consume => Http["shop-${name}-a"] }
  porch_e2e::web { "${name}-b": consume => Http["shop-${name}-b"] }
}

Porch_e2e::Db produces Sql { host => $::fqdn }
Porch_e2e::App consumes Sql { }
Porch_e2e::App produces Http { host => $::fqdn }
Porch_e2e::Web consumes Http { }
