Puppet::Type.newtype :http, :is_capability => true do
  newparam :name, :namevar => true
  [:host, :port].each { |p| newparam p }
end
