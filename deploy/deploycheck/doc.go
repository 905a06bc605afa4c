// Package deploycheck checks the deployment files where no Docker engine runs:
// its tests (run by `go test ./...`, hence `make test`) check the Prometheus
// config and alert rules with promtool, the HAProxy config with haproxy -c,
// compose.yaml, deploy/Dockerfile and .dockerignore against the repository,
// the Grafana provisioning and dashboard, and that every metric a dashboard
// panel or an alert queries is exported by the api and the consumer, scraped
// while they run against the local Redis, PostgreSQL and Kafka and then
// queried through a real Prometheus.
//
// promtool, prometheus and haproxy come from Debian packages; install them
// with `bash deploy/local/install.sh checks`. Under go test -short the checks
// that need a tool or a service skip, naming it; otherwise (make test) a
// missing tool fails them, it never skips them.
package deploycheck
