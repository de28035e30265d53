package bridge

import (
	"context"
	"errors"
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

	// notices, when set, tells users of failing accounts (notice.go).
	notices *notices
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
	}
	m.reg.MustRegister(m.polls, m.delivered, m.deliveredBytes, m.deliverSeconds, m.sinkErrors,
		m.imapConns, m.imapActive, m.imapCommands, m.imapCmdErrors, m.imapServerBugs, &statusCollector{b: b},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// afterPoll is the accounts poller's AfterPoll: it counts a finished
// poll by result. A poll that found the store unreachable is not the
// account's failure and is not counted.
func (m *metrics) afterPoll(a poller.Account, _ poller.Result, err error) {
	switch {
	case err == nil:
		m.polls.WithLabelValues(a.Name, "ok").Inc()
	case !errors.Is(err, store.ErrUnavailable):
		m.polls.WithLabelValues(a.Name, "error").Inc()
	}
}

// sink wraps the store for the poller, observing what passes through.
func (m *metrics) sink(st Backend) poller.Sink { return &meteredSink{Backend: st, m: m} }

// meteredSink is the store with the poller's writes observed.
type meteredSink struct {
	Backend
	m *metrics
}

var _ poller.Sink = (*meteredSink)(nil)

// Stage implements poller.Sink: the batch's Commit is observed; its
// duration counts from Stage, as a whole Deliver's did.
func (s *meteredSink) Stage(ctx context.Context, ds []store.Delivery) (store.Staged, error) {
	start := time.Now()
	failed := func() { s.m.sinkErrors.WithLabelValues("deliver").Inc() }
	return stageObserved(ctx, s.Backend, ds, failed, func() {
		if len(ds) == 0 {
			return
		}
		s.m.deliverSeconds.WithLabelValues(ds[0].Account).Observe(time.Since(start).Seconds())
		for _, d := range ds {
			s.m.delivered.WithLabelValues(d.Account).Inc()
			s.m.deliveredBytes.WithLabelValues(d.Account).Add(float64(len(d.Raw)))
		}
	})
}

// stageObserved stages ds in st and reports the outcome: failed when the
// Stage or the batch's Commit fails, committed when the Commit succeeds.
func stageObserved(ctx context.Context, st Backend, ds []store.Delivery, failed, committed func()) (store.Staged, error) {
	staged, err := st.Stage(ctx, ds)
	if err != nil {
		failed()
		return nil, err
	}
	return &observedStaged{Staged: staged, failed: failed, committed: committed}, nil
}

// observedStaged is a staged batch whose Commit reports its outcome.
type observedStaged struct {
	store.Staged
	failed, committed func()
}

// Commit implements store.Staged.
func (s *observedStaged) Commit(ctx context.Context) ([]store.Delivered, error) {
	out, err := s.Staged.Commit(ctx)
	if err != nil {
		s.failed()
	} else {
		s.committed()
	}
	return out, err
}

// SetAccountStatuses implements poller.Sink.
func (s *meteredSink) SetAccountStatuses(ctx context.Context, sts []store.AccountStatus) error {
	if err := s.Backend.SetAccountStatuses(ctx, sts); err != nil {
		s.m.sinkErrors.WithLabelValues("set_account_status").Inc()
		return err
	}
	if s.m.notices != nil {
		for _, st := range sts {
			s.m.notices.observe(ctx, st)
		}
	}
	return nil
}

// statusCollector exports poller.Status at scrape time.
type statusCollector struct{ b *Bridge }

var (
	// Messages and bytes fetched are popbridge_delivered_messages_total and
	// popbridge_delivered_bytes_total (counted as each group commit lands);
	// the poller's own totals are not exported a second time.
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
	descAnomalies = prometheus.NewDesc("popbridge_account_identity_anomalies_total",
		"Messages whose upstream identity did not match their content, by kind: uidl_reused, renumbered, twins, unproven (kept on the server because their identity could not be proven).",
		[]string{"account", "kind"}, nil)
	descConnsOpen = prometheus.NewDesc("popbridge_poller_connections_open",
		"Upstream POP3 sessions open now (logins included), over all accounts; capped by [poller] max_connections.", nil, nil)
	descWaiting = prometheus.NewDesc("popbridge_poller_waiting_accounts",
		"Accounts whose poll waits for a connection slot ([poller] max_connections, max_connections_per_host).", nil, nil)
	descDamagedReads = prometheus.NewDesc("popbridge_store_damaged_reads_total",
		"Reads of stored data that failed their checksum or found their pack missing or short, by record "+
			"(message: a message's bytes, answered NO [CORRUPTION] for that message only; text: a search text, skipped by SEARCH).",
		[]string{"record"}, nil)
	descStoreDamaged = prometheus.NewDesc("popbridge_store_damaged",
		"1 when the store knows of damage that makes /healthz fail: database corruption seen since start, "+
			"or packs found missing or truncated at start (run popbridge verify).", nil, nil)
	descStart = prometheus.NewDesc("popbridge_start_time_seconds",
		"Unix time the bridge started.", nil, nil)
	descReloadOK = prometheus.NewDesc("popbridge_config_last_reload_successful",
		"1 when the last configuration reload succeeded (or none was tried since start), 0 when it was refused.", nil, nil)
	descReloadTime = prometheus.NewDesc("popbridge_config_last_reload_success_timestamp_seconds",
		"Unix time of the last successful configuration load (the start counts as one).", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSkipped, descLastAttempt, descLastSuccess, descFailing, descPolling, descAnomalies,
		descStart, descReloadOK, descReloadTime, descConnsOpen, descWaiting, descDamagedReads, descStoreDamaged} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	c.b.mu.Lock()
	started, rl, st := c.b.startedAt, c.b.reload, c.b.store
	c.b.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descStart, prometheus.GaugeValue, unixSeconds(started))
	ch <- prometheus.MustNewConstMetric(descReloadOK, prometheus.GaugeValue, boolFloat(rl.ok))
	ch <- prometheus.MustNewConstMetric(descReloadTime, prometheus.GaugeValue, unixSeconds(rl.lastSuccess))
	if open, waiting, ok := c.b.connectionStats(); ok {
		ch <- prometheus.MustNewConstMetric(descConnsOpen, prometheus.GaugeValue, float64(open))
		ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(waiting))
	}
	if st != nil {
		d := st.DamageStats()
		ch <- prometheus.MustNewConstMetric(descDamagedReads, prometheus.CounterValue, float64(d.Messages), "message")
		ch <- prometheus.MustNewConstMetric(descDamagedReads, prometheus.CounterValue, float64(d.Texts), "text")
		ch <- prometheus.MustNewConstMetric(descStoreDamaged, prometheus.GaugeValue, boolFloat(st.Health() != nil))
	}
	for _, s := range c.b.Status() {
		ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.CounterValue, float64(s.Skipped), s.Account)
		ch <- prometheus.MustNewConstMetric(descLastAttempt, prometheus.GaugeValue, unixSeconds(s.LastAttempt), s.Account)
		ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, unixSeconds(s.LastSuccess), s.Account)
		ch <- prometheus.MustNewConstMetric(descFailing, prometheus.GaugeValue, boolFloat(s.LastError != ""), s.Account)
		ch <- prometheus.MustNewConstMetric(descPolling, prometheus.GaugeValue, boolFloat(s.Polling), s.Account)
		for _, k := range []struct {
			kind string
			n    int64
		}{{"uidl_reused", s.Anomalies.UIDLReused}, {"renumbered", s.Anomalies.Renumbered}, {"twins", s.Anomalies.Twins}, {"unproven", s.Anomalies.Unproven}} {
			ch <- prometheus.MustNewConstMetric(descAnomalies, prometheus.CounterValue, float64(k.n), s.Account, k.kind)
		}
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
