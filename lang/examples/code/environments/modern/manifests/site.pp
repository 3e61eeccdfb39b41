# Puppet Server reads this file: each node gets its components from ordinary classification.
# porch's application model (orchestration/, which Puppet never reads) only orders the nodes'
# runs. Values that PE passed through capabilities are given here (or from Hiera).
node 'db1.example.com' {
  lamp::db { 'prod': db_user => 'app', db_password => 'secret' }
}
node 'app1.example.com' {
  lamp::app { 'prod': db_host => 'db1.example.com', db_user => 'app', db_password => 'secret' }
}
node 'lb1.example.com' {
  lamp::lb { 'prod': backend => 'app1.example.com:8080' }
}
node 'dev1.example.com' {
  lamp::db { 'dev': db_user => 'app', db_password => 'devpw' }
  lamp::app { 'dev': db_host => 'localhost', db_user => 'app', db_password => 'devpw' }
  lamp::lb { 'dev': backend => 'localhost:8080' }
}
node 'cache1.example.com' {
  webstack::cache { 'shop': }
}
node 'web1.example.com' {
  webstack::web { ['shop-a', 'shop-front']: cache => 'cache1.example.com:6379' }
}
node 'web2.example.com' {
  webstack::web { 'shop-b': cache => 'cache1.example.com:6379' }
}
node 'blog1.example.com' {
  webstack::cache { 'blog': }
  webstack::web { ['blog-a', 'blog-b', 'blog-front']:
    docroot => '/srv/blog',
    cache   => 'localhost:6379',
  }
}
node 'mon1.example.com' {
  webstack::monitor { ['shop', 'blog']: }
}
node default { }
