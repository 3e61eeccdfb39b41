define webstack::web (String $cache, String $docroot = '/srv/www') {
  file { "/etc/nginx/sites-enabled/${name}": content => "root ${docroot}; # cache ${cache}\n" }
}
