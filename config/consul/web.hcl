# Two instances of a web app behind the route /web, as in the Fabio walkthrough
# this product grew from. Register with the agent on the app's host:
#   consul services register config/consul/web.hcl
# Switchyard (like Fabio) routes /web, /web/ and /web/... to the instances whose
# checks pass; no other configuration is needed.

services {
  id   = "web-1"
  name = "web"
  port = 8000
  tags = ["urlprefix-/web"]
  meta = { version = "1.0.0" }
  check {
    id       = "web-1-http"
    http     = "http://127.0.0.1:8000/web/"
    interval = "5s"
    timeout  = "1s"
  }
}

services {
  id   = "web-2"
  name = "web"
  port = 8001
  tags = ["urlprefix-/web"]
  meta = { version = "1.0.0" }
  check {
    id       = "web-2-http"
    http     = "http://127.0.0.1:8001/web/"
    interval = "5s"
    timeout  = "1s"
  }
}
