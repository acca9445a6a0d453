# A blue/green pair in Environment Manager's style: the deployment agent tags
# each instance with its version and slice (`version:<v>`, `slice:<s>`).
# Switchyard reads those tags (service meta `version`/`slice` would win), so the
# target decides which slice gets traffic:
#   consul services register config/consul/blue-green.hcl
#   switchyard target set shop --slice green --wait      # or --version 1.6.0
# `strip=/shop` removes the prefix before the request reaches the app.

services {
  id   = "shop-blue"
  name = "shop"
  port = 9001
  tags = ["urlprefix-/shop strip=/shop", "version:1.5.0", "slice:blue"]
  check {
    id       = "shop-blue-http"
    http     = "http://127.0.0.1:9001/health"
    interval = "5s"
    timeout  = "1s"
  }
}

services {
  id   = "shop-green"
  name = "shop"
  port = 9002
  tags = ["urlprefix-/shop strip=/shop", "version:1.6.0", "slice:green"]
  check {
    id       = "shop-green-http"
    http     = "http://127.0.0.1:9002/health"
    interval = "5s"
    timeout  = "1s"
  }
}
