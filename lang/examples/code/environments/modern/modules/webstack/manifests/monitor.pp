define webstack::monitor () {
  notify { "watching ${name}": }
}
