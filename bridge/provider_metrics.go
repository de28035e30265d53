package bridge

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// providerMetrics are provider mode's series: aggregated over every
// provider user, so that /metrics stays bounded however many log in (the
// per-account series are for [[account]] entries only).
type providerMetrics struct {
	logins         *prometheus.CounterVec // result
	polls          *prometheus.CounterVec // result
	delivered      prometheus.Counter
	deliveredBytes prometheus.Counter
	sinkErrors     prometheus.Counter
}

var (
	descProviderUsers = prometheus.NewDesc("popbridge_provider_users",
		"Provider users known, by state: active (polled), needs_login (the POP server refused the kept password), idle (not polled: credentials = \"session\" and logged out).",
		[]string{"state"}, nil)
	descProviderConns = prometheus.NewDesc("popbridge_provider_connections_open",
		"POP3 sessions open now towards the [provider] host, logins included; capped by max_upstream_connections.", nil, nil)
	descProviderWaiting = prometheus.NewDesc("popbridge_provider_waiting",
		"Provider polls and logins waiting for a connection slot (max_upstream_connections).", nil, nil)
)

// newProviderMetrics registers provider mode's series on reg; b's provider
// is read at scrape time.
func newProviderMetrics(reg *prometheus.Registry, b *Bridge) *providerMetrics {
	m := &providerMetrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_provider_logins_total",
			Help: "IMAP logins of provider users, by result: ok (POP server accepted), cached (auth_cache), rejected, unavailable (POP server unreachable).",
		}, []string{"result"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_provider_polls_total",
			Help: "Scheduled polls of provider users, by result: ok, error, login_refused (polling stopped until the user logs in again).",
		}, []string{"result"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popbridge_provider_delivered_messages_total",
			Help: "Messages fetched for provider users and committed to the store.",
		}),
		deliveredBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popbridge_provider_delivered_bytes_total",
			Help: "Bytes of messages fetched for provider users and committed to the store.",
		}),
		sinkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popbridge_provider_store_errors_total",
			Help: "Store deliveries for provider users that failed.",
		}),
	}
	for _, r := range []string{"ok", "cached", "rejected", "unavailable"} {
		m.logins.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error", "login_refused"} {
		m.polls.WithLabelValues(r)
	}
	reg.MustRegister(m.logins, m.polls, m.delivered, m.deliveredBytes, m.sinkErrors, &providerCollector{b: b})
	return m
}

// providerCollector exports the provider's user counts and connections at
// scrape time.
type providerCollector struct{ b *Bridge }

// Describe implements prometheus.Collector.
func (c *providerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descProviderUsers
	ch <- descProviderConns
	ch <- descProviderWaiting
}

// Collect implements prometheus.Collector.
func (c *providerCollector) Collect(ch chan<- prometheus.Metric) {
	c.b.mu.Lock()
	p := c.b.provider
	c.b.mu.Unlock()
	if p == nil {
		return
	}
	active, needs, idle := p.counts()
	ch <- prometheus.MustNewConstMetric(descProviderUsers, prometheus.GaugeValue, float64(active), "active")
	ch <- prometheus.MustNewConstMetric(descProviderUsers, prometheus.GaugeValue, float64(needs), "needs_login")
	ch <- prometheus.MustNewConstMetric(descProviderUsers, prometheus.GaugeValue, float64(idle), "idle")
	open, waiting := p.poller.ConnectionStats()
	ch <- prometheus.MustNewConstMetric(descProviderConns, prometheus.GaugeValue, float64(open))
	ch <- prometheus.MustNewConstMetric(descProviderWaiting, prometheus.GaugeValue, float64(waiting))
}

// providerSink is the store for the provider's poller, with deliveries
// counted in aggregate.
type providerSink struct {
	Backend
	m *providerMetrics
}

var _ poller.Sink = (*providerSink)(nil)

// Stage implements poller.Sink: the batch is counted when it commits.
func (s *providerSink) Stage(ctx context.Context, ds []store.Delivery) (store.Staged, error) {
	return stageObserved(ctx, s.Backend, ds, s.m.sinkErrors.Inc, func() {
		var n int
		for _, d := range ds {
			n += len(d.Raw)
		}
		s.m.delivered.Add(float64(len(ds)))
		s.m.deliveredBytes.Add(float64(n))
	})
}
