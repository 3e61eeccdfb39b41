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
