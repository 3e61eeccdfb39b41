# The site: which nodes run which components of which application instance. porch orders
# the nodes by it; each node still gets its components from manifests/site.pp.
site {
  lamp { 'prod':
    db_user     => 'app',
    db_password => 'secret',
    nodes       => {
      Node['db1.example.com']  => Lamp::Db['prod'],
      Node['app1.example.com'] => Lamp::App['prod'],
      Node['lb1.example.com']  => Lamp::Lb['prod'],
    },
  }
  lamp { 'dev':
    db_user     => 'app',
    db_password => 'devpw',
    nodes       => {
      Node['dev1.example.com'] => [Lamp::Db['dev'], Lamp::App['dev'], Lamp::Lb['dev']],
    },
  }
  webstack { 'shop':
    nodes => {
      Node['cache1.example.com'] => Webstack::Cache['shop'],
      Node['web1.example.com']   => [Webstack::Web['shop-a'], Webstack::Web['shop-front']],
      Node['web2.example.com']   => Webstack::Web['shop-b'],
      Node['mon1.example.com']   => Webstack::Monitor['shop'],
    },
  }
  webstack { 'blog':
    docroot => '/srv/blog',
    nodes   => {
      Node['blog1.example.com'] => [Webstack::Cache['blog'], Webstack::Web['blog-a'], Webstack::Web['blog-b'], Webstack::Web['blog-front']],
      Node['mon1.example.com']  => Webstack::Monitor['blog'],
    },
  }
}
