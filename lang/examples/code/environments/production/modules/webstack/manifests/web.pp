define webstack::web (String $docroot = '/srv/www') {
  package { 'nginx': ensure => installed }
}
Webstack::Web consumes Cache { }
Webstack::Web produces Web { url => "http://${::fqdn}/" }
