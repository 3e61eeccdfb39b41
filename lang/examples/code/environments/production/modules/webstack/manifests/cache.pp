define webstack::cache (Integer $memory_mb = 256) {
  package { 'redis': ensure => installed }
}
Webstack::Cache produces Cache { endpoint => "${::fqdn}:6379" }
