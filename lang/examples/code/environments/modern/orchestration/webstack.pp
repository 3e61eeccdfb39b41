# Three tiers across nodes: the cache before the web servers, the web servers before the
# monitor that checks them; the monitor also needs the cache.
application webstack (String $docroot = '/srv/www') {
  webstack::cache { $name: export => Cache["cache-${name}"] }
  webstack::web { ["${name}-a", "${name}-b"]:
    docroot => $docroot,
    consume => Cache["cache-${name}"],
  }
  webstack::web { "${name}-front":
    consume => Cache["cache-${name}"],
    export  => Web["front-${name}"],
  }
  webstack::monitor { $name:
    require => [Web["front-${name}"], Cache["cache-${name}"]],
  }
}

Webstack::Cache produces Cache { endpoint => "${::fqdn}:6379" }
Webstack::Web consumes Cache { }
Webstack::Web produces Web { url => "http://${::fqdn}/" }
