# ACL policy for an operator or deploy pipeline that sets targets with
# `switchyard target set` and rolls versions out with `switchyard rollout`. It
# may write target state (and each rollout's record beside its target,
# <prefix>/<service>/rollout) and read what it needs to check that the target is
# healthy; it cannot register services or change ACLs.
#   consul acl policy create -name switchyard-operator -rules @config/acl/switchyard-operator.hcl
#   consul acl token create -description "deploy pipeline" -policy-name switchyard-operator

key_prefix "switchyard/targets/" {
  policy = "write"
}

service_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
