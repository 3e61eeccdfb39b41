Puppet::Type.newtype :web, :is_capability => true do
  newparam :name, :namevar => true
  newparam :url
end
