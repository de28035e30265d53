package bridge

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// metrics is the bridge's Prometheus registry (its own, not the global
// one). Poll counts and delivery figures are observed on the way to the
// store (meteredSink); per-account state is read from poller.Status at
// scrape time; IMAP connections are counted on the listeners.
type metrics struct {
	reg *prometheus.Registry

	polls          *prometheus.CounterVec   // account, result
	delivered      *prometheus.CounterVec   // account
	deliveredBytes *prometheus.CounterVec   // account
	deliverSeconds *prometheus.HistogramVec // account
	sinkErrors     *prometheus.CounterVec   // op
	imapConns      *prometheus.CounterVec   // listener
	imapActive     *prometheus.GaugeVec     // listener
	imapCommands   *prometheus.HistogramVec // command
	imapCmdErrors  *prometheus.CounterVec   // command
	imapServerBugs prometheus.Counter

	mu   sync.Mutex
	last map[string]store.AccountStatus // last status written per account
}

func newMetrics(b *Bridge) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_polls_total",
			Help: "Completed polls of an upstream account, by result (ok or error).",
		}, []string{"account", "result"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_delivered_messages_total",
			Help: "Messages fetched from an upstream account and committed to the store.",
		}, []string{"account"}),
		deliveredBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_delivered_bytes_total",
			Help: "Bytes of messages fetched from an upstream account and committed to the store.",
		}, []string{"account"}),
		deliverSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "popbridge_deliver_duration_seconds",
			Help:    "Time to commit one batch of fetched messages durably to the store.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"account"}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_store_errors_total",
			Help: "Store operations of the poller that failed, by operation.",
		}, []string{"op"}),
		imapConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_imap_connections_total",
			Help: "IMAP connections accepted, by listener (imap, imaps).",
		}, []string{"listener"}),
		imapActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "popbridge_imap_connections_active",
			Help: "IMAP connections open now, by listener.",
		}, []string{"listener"}),
		imapCommands: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "popbridge_imap_command_seconds",
			Help: "Time the IMAP session took to execute a command, by command name (\"UID FETCH\"); " +
				"commands answered without the session (CAPABILITY, NOOP, LOGOUT, STARTTLS) are not included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms .. 16 s
		}, []string{"command"}),
		imapCmdErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_imap_command_errors_total",
			Help: "IMAP commands answered NO or BAD by the session, by command name.",
		}, []string{"command"}),
		imapServerBugs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popbridge_imap_serverbug_total",
			Help: "IMAP commands answered NO [SERVERBUG]: internal errors, each also logged.",
		}),
		last: map[string]store.AccountStatus{},
	}
	m.reg.MustRegister(m.polls, m.delivered, m.deliveredBytes, m.deliverSeconds, m.sinkErrors,
		m.imapConns, m.imapActive, m.imapCommands, m.imapCmdErrors, m.imapServerBugs, &statusCollector{b: b},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// seed loads the persisted account statuses, so that a restart does not
// count the last poll before it again.
func (m *metrics) seed(ctx context.Context, st *store.Store) error {
	sts, err := st.AccountStatuses(ctx)
	if err != nil {
		return fmt.Errorf("read account statuses: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range sts {
		m.last[s.Account] = s
	}
	return nil
}

// observeStatus counts a finished poll when a status write advances the
// last success or the last error of an account.
func (m *metrics) observeStatus(st store.AccountStatus) {
	m.mu.Lock()
	prev, seen := m.last[st.Account]
	m.last[st.Account] = st
	m.mu.Unlock()
	if !st.LastSuccess.IsZero() && (!seen || st.LastSuccess.After(prev.LastSuccess)) {
		m.polls.WithLabelValues(st.Account, "ok").Inc()
	}
	if !st.LastErrorAt.IsZero() && (!seen || st.LastErrorAt.After(prev.LastErrorAt)) {
		m.polls.WithLabelValues(st.Account, "error").Inc()
	}
}

// sink wraps the store for the poller, observing what passes through.
func (m *metrics) sink(st *store.Store) poller.Sink { return &meteredSink{Store: st, m: m} }

// meteredSink is *store.Store with the poller's writes observed.
type meteredSink struct {
	*store.Store
	m *metrics
}

var _ poller.Sink = (*meteredSink)(nil)

// Deliver implements poller.Sink.
func (s *meteredSink) Deliver(ctx context.Context, ds []store.Delivery) ([]store.Delivered, error) {
	start := time.Now()
	out, err := s.Store.Deliver(ctx, ds)
	if err != nil {
		s.m.sinkErrors.WithLabelValues("deliver").Inc()
		return out, err
	}
	if len(ds) > 0 {
		acct := ds[0].Account
		s.m.deliverSeconds.WithLabelValues(acct).Observe(time.Since(start).Seconds())
		for _, d := range ds {
			s.m.delivered.WithLabelValues(d.Account).Inc()
			s.m.deliveredBytes.WithLabelValues(d.Account).Add(float64(len(d.Raw)))
		}
	}
	return out, nil
}

// SetAccountStatus implements poller.Sink.
func (s *meteredSink) SetAccountStatus(ctx context.Context, st store.AccountStatus) error {
	if err := s.Store.SetAccountStatus(ctx, st); err != nil {
		s.m.sinkErrors.WithLabelValues("set_account_status").Inc()
		return err
	}
	s.m.observeStatus(st)
	return nil
}

// statusCollector exports poller.Status at scrape time.
type statusCollector struct{ b *Bridge }

var (
	descFetched = prometheus.NewDesc("popbridge_account_fetched_messages_total",
		"Messages fetched from the account, as counted by its poller.", []string{"account"}, nil)
	descBytes = prometheus.NewDesc("popbridge_account_fetched_bytes_total",
		"Bytes fetched from the account, as counted by its poller.", []string{"account"}, nil)
	descSkipped = prometheus.NewDesc("popbridge_account_skipped_messages_total",
		"Messages skipped (too large), as counted by its poller.", []string{"account"}, nil)
	descLastAttempt = prometheus.NewDesc("popbridge_account_last_attempt_timestamp_seconds",
		"Unix time of the last poll attempt.", []string{"account"}, nil)
	descLastSuccess = prometheus.NewDesc("popbridge_account_last_success_timestamp_seconds",
		"Unix time of the last successful poll.", []string{"account"}, nil)
	descFailing = prometheus.NewDesc("popbridge_account_failing",
		"1 when the last poll of the account failed.", []string{"account"}, nil)
	descPolling = prometheus.NewDesc("popbridge_account_polling",
		"1 while a poll of the account is running.", []string{"account"}, nil)
	descUp = prometheus.NewDesc("popbridge_up_seconds",
		"Seconds since the bridge started.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFetched, descBytes, descSkipped, descLastAttempt, descLastSuccess, descFailing, descPolling, descUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, time.Since(c.b.startedAt).Seconds())
	for _, s := range c.b.Status() {
		ch <- prometheus.MustNewConstMetric(descFetched, prometheus.CounterValue, float64(s.Fetched), s.Account)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.Bytes), s.Account)
		ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.CounterValue, float64(s.Skipped), s.Account)
		ch <- prometheus.MustNewConstMetric(descLastAttempt, prometheus.GaugeValue, unixSeconds(s.LastAttempt), s.Account)
		ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, unixSeconds(s.LastSuccess), s.Account)
		ch <- prometheus.MustNewConstMetric(descFailing, prometheus.GaugeValue, boolFloat(s.LastError != ""), s.Account)
		ch <- prometheus.MustNewConstMetric(descPolling, prometheus.GaugeValue, boolFloat(s.Polling), s.Account)
	}
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// observeCommand is imapfront's OnCommand hook. Command names come from
// imapfront's fixed set, so the label's cardinality is bounded.
func (m *metrics) observeCommand(name string, d time.Duration, err error) {
	m.imapCommands.WithLabelValues(name).Observe(d.Seconds())
	if err != nil {
		m.imapCmdErrors.WithLabelValues(name).Inc()
	}
}

// countConns wraps ln so that accepted and open connections are counted.
func (m *metrics) countConns(ln net.Listener, name string) net.Listener {
	return &countingListener{Listener: ln, total: m.imapConns.WithLabelValues(name), active: m.imapActive.WithLabelValues(name)}
}

type countingListener struct {
	net.Listener
	total  prometheus.Counter
	active prometheus.Gauge
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.total.Inc()
	l.active.Inc()
	return &countedConn{Conn: c, active: l.active}, nil
}

type countedConn struct {
	net.Conn
	active prometheus.Gauge
	once   sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(c.active.Dec)
	return c.Conn.Close()
}
