# The database tier of a lamp stack. Its `produces Sql` mapping is in orchestration/lamp.pp.
define lamp::db (String $db_user, String $db_password, Integer $port = 3306) {
  package { "mariadb-server-${name}": ensure => installed, name => 'mariadb-server' }
  file { "/etc/mysql/conf.d/lamp-${name}.cnf": content => "[mysqld]\nport=${port}\n" }
}
