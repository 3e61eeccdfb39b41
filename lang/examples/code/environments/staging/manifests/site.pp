# Staging has no applications: jobs here target nodes directly.
node default { }
