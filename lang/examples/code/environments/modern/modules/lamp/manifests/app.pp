# The application tier: reads the database it is told about.
define lamp::app (
  String $db_host,
  String $db_user,
  String $db_password,
  Integer $db_port = 3306,
  String $db_name = $name,
  Integer $port = 8080,
) {
  file { "/etc/lamp-${name}.conf": content => "db=${db_host}:${db_port}/${db_name}\nport=${port}\n" }
}
