# A load balancer: it only needs the app to be up.
define lamp::lb (String $backend) {
  file { "/etc/haproxy/lamp-${name}.cfg": content => "server app ${backend}\n" }
}
