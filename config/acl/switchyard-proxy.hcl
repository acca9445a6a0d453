# ACL policy for the Switchyard proxy: read-only, nothing else.
#   consul acl policy create -name switchyard-proxy -rules @config/acl/switchyard-proxy.hcl
#   consul acl token create -description "switchyard proxy" -policy-name switchyard-proxy
# If you change routing.targetPrefix, change the key_prefix below to match
# (keep the trailing slash: it stops `switchyard/targets-other/` matching).

key_prefix "switchyard/targets/" {
  policy = "read"
}

# Fabio's route overrides and no-route page (routing.fabio.kvPath and
# routing.fabio.noRouteHtmlPath, fabio/config and fabio/noroute.html), read
# with one watch of their directory. Drop this (and set both options to "")
# if you do not use them.
key_prefix "fabio/" {
  policy = "read"
}

# TLS certificates with their PRIVATE KEYS (tls.certificates.consulPrefix): only
# this token and the operators who rotate certificates may read these keys;
# make sure no other policy grants read on this prefix (a key_prefix "" read
# rule would). Change it along with tls.certificates.consulPrefix.
key_prefix "switchyard/certs/" {
  policy = "read"
}

service_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
