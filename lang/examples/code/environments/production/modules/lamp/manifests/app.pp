define lamp::app ($db_user, $db_password, $db_host, $db_port, $db_name, Integer $port = 8080) {
  file { "/etc/${name}.conf": content => "db=${db_host}:${db_port}" }
}
Lamp::App consumes Sql {
  db_user     => $user,
  db_password => $password,
  db_host     => $host,
  db_port     => $port,
  db_name     => $database,
}
Lamp::App produces Http { host => $::fqdn, port => $port }
