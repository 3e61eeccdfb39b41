# A load balancer: it only needs the app to be up.
define lamp::lb () {
  package { 'haproxy': ensure => installed }
}
