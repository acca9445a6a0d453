# This host's Switchyard in the Consul catalog, so that operators' commands
# with --fleet (`switchyard target get|set|toggle --fleet`) find it and ask its
# admin listener what it really serves. Register it with the host's agent,
# like any other service:
#   consul services register config/consul/switchyard.hcl
#
# Switchyard does not register itself: its token is read-only
# (config/acl/switchyard-proxy.hcl) and registering needs service:write.
#
# --fleet asks http://<this address>:<meta admin_port>, so admin.listen must be
# reachable from where operators run the command: e.g. 0.0.0.0:9998, or this
# host's address on a management network (the admin listener has no
# authentication; keep it off public networks). No urlprefix- tag: Switchyard
# must not route to itself.

services {
  id   = "switchyard"
  name = "switchyard"
  port = 9999
  meta = {
    admin_port = "9998"
  }
  check {
    id       = "switchyard-ready"
    name     = "Switchyard /ready"
    http     = "http://127.0.0.1:9998/ready"
    interval = "10s"
    timeout  = "2s"
  }
}
