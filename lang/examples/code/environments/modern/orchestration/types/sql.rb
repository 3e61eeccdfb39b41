Puppet::Type.newtype :sql, :is_capability => true do
  newparam :name, :namevar => true
  [:user, :password, :host, :port, :database].each { |p| newparam p }
end
