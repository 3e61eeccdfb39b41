# porch reads this directory; Puppet Server never does (Puppet >= 6 cannot parse
# `application` or capability mappings). The components stay in modules/lamp.
application lamp (String $db_user, String $db_password) {
  lamp::db { $name:
    db_user     => $db_user,
    db_password => $db_password,
    export      => Sql["lamp-${name}"],
  }
  lamp::app { $name:
    consume => Sql["lamp-${name}"],
    export  => Http["lamp-${name}"],
  }
  lamp::lb { $name:
    require => Http["lamp-${name}"],
  }
}

Lamp::Db produces Sql {
  user     => $db_user,
  password => $db_password,
  host     => $::fqdn,
  port     => $port,
  database => $name,
}
Lamp::App consumes Sql {
  db_user     => $user,
  db_password => $password,
  db_host     => $host,
  db_port     => $port,
  db_name     => $database,
}
Lamp::App produces Http { host => $::fqdn, port => $port }
