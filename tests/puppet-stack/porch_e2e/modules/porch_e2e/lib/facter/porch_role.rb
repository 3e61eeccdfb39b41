# porch_role: the role of this agent identity, from <confdir>/facts.d/porch_role.txt.
# Facter reads external facts only from host-wide directories, shared by every identity on a
# host; the confdir is each identity's own.
Facter.add(:porch_role) do
  setcode do
    path = File.join(Puppet[:confdir], 'facts.d', 'porch_role.txt')
    File.read(path).strip if File.exist?(path)
  end
end
