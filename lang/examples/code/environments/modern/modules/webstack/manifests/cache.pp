define webstack::cache (Integer $memory_mb = 256) {
  file { "/etc/redis/webstack-${name}.conf": content => "maxmemory ${memory_mb}mb\n" }
}
