define lamp::db (String $db_user, String $db_password, Integer $port = 3306) {
  package { 'mariadb-server': ensure => installed }
  service { 'mariadb': ensure => running, require => Package['mariadb-server'] }
}
Lamp::Db produces Sql {
  user     => $db_user,
  password => $db_password,
  host     => $::fqdn,
  port     => $port,
  database => $name,
}
