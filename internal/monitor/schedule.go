package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/meshpki/meshpki/internal/audit"
	"github.com/meshpki/meshpki/internal/ca"
	"github.com/meshpki/meshpki/internal/duration"
	"github.com/meshpki/meshpki/internal/netguard"
	"github.com/meshpki/meshpki/internal/periodic"
	"github.com/meshpki/meshpki/internal/policy"
	"github.com/meshpki/meshpki/internal/store"
)

// ScheduleOptions shape a scheduled scan; they are kept with the schedule
// as JSON (store.ScanSchedule.Options).
type ScheduleOptions struct {
	SNI        string          `json:"sni,omitempty"`
	StartTLS   string          `json:"starttls,omitempty"`
	Timeout    policy.Duration `json:"timeout,omitempty"`
	AllowLarge bool            `json:"allow_large,omitempty"`
	// Labels go with what the schedule sees (see CheckLabels).
	Labels map[string]string `json:"labels,omitempty"`
}

// DecodeScheduleOptions reads a schedule's options as stored.
func DecodeScheduleOptions(b []byte) (ScheduleOptions, error) {
	var opts ScheduleOptions
	if len(b) > 0 {
		if err := json.Unmarshal(b, &opts); err != nil {
			return opts, fmt.Errorf("schedule options: %w", err)
		}
	}
	return opts, nil
}

// CheckName checks the name of a schedule, channel or rule (what): 1 to 64
// letters, digits, '-', '_' or '.'.
func CheckName(what, name string) error {
	if name == "" || len(name) > 64 || strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) {
		return fmt.Errorf("%s name %q: use 1 to 64 letters, digits, '-', '_' or '.'", what, clip(name))
	}
	return nil
}

// MinScheduleInterval is the shortest interval a schedule may have.
const MinScheduleInterval = time.Minute

// CheckSchedule checks a schedule before it is stored: a name, network
// targets that parse, an interval of at least MinScheduleInterval. It
// returns the targets as ParseTargets reads them.
func CheckSchedule(name string, targets []string, every time.Duration, opts ScheduleOptions) ([]Target, error) {
	if err := CheckName("schedule", name); err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, errors.New("a schedule needs at least one target")
	}
	if every < MinScheduleInterval {
		return nil, fmt.Errorf("interval %s is shorter than %s", duration.Format(every), duration.Format(MinScheduleInterval))
	}
	if opts.Timeout < 0 {
		return nil, errors.New("timeout must be positive")
	}
	if err := CheckLabels(opts.Labels); err != nil {
		return nil, err
	}
	return ParseTargets(targets, TargetOptions{SNI: opts.SNI, StartTLS: opts.StartTLS, AllowLarge: opts.AllowLarge, NetworkOnly: true})
}

// Scheduler runs the scan schedules in the store: each replica claims the
// runs that are due, so each runs once, scans with the network guard, and
// records the results in the inventory.
type Scheduler struct {
	Store     store.ScanSchedules
	Inventory *Inventory
	// Guard decides which addresses scans may reach.
	Guard netguard.Guard
	// Tick is how often due schedules are looked for (default 5s).
	Tick time.Duration
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
	// Logger receives a line per run (default slog.Default()).
	Logger *slog.Logger
	// Ran, if set, is told of each run: the schedule and its results.
	Ran func(schedule string, results []Result, err error)

	waker periodic.Waker
}

// Wake makes Run look for due schedules now rather than at its next tick:
// a schedule just added runs at once.
func (s *Scheduler) Wake() { s.waker.Wake() }

// Run claims and runs due schedules until ctx ends. One replica at a time
// runs it (the elected leader, internal/leader): it first makes due what
// an earlier run left claimed and unfinished.
func (s *Scheduler) Run(ctx context.Context) error {
	tick := s.Tick
	if tick <= 0 {
		tick = 5 * time.Second
	}
	if n, err := s.Store.ReleaseSchedules(ctx, s.now()); err != nil && ctx.Err() == nil {
		s.log().Error("scan schedules: take back unfinished runs", "error", err)
	} else if n > 0 {
		s.log().Info("scan schedules: running again what an earlier leader left unfinished", "schedules", n)
	}
	return periodic.Run(ctx, tick, &s.waker, func(ctx context.Context) { s.RunDue(ctx) })
}

func (s *Scheduler) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

func (s *Scheduler) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// RunDue runs every schedule due now, one after another, and returns how
// many ran.
func (s *Scheduler) RunDue(ctx context.Context) int {
	ran := 0
	for ctx.Err() == nil {
		sc, err := s.Store.ClaimDueSchedule(ctx, s.now())
		if errors.Is(err, store.ErrNotFound) {
			return ran
		}
		if err != nil {
			if ctx.Err() == nil {
				s.log().Error("scan schedules: claim", "error", err)
			}
			return ran
		}
		ran++
		results, err := s.RunSchedule(ctx, sc)
		if ctx.Err() != nil {
			// The term ended (or the server stops) during the run: the
			// claim stays for the next leader to run it again (Run).
			return ran
		}
		msg := ""
		if err != nil {
			msg = err.Error()
			s.log().Warn("scheduled scan failed", "schedule", sc.Name, "error", err)
		} else {
			s.log().Info("scheduled scan", "schedule", sc.Name, "targets", len(results))
		}
		if s.Ran != nil {
			s.Ran(sc.Name, results, err)
		}
		if err := s.Store.FinishSchedule(context.WithoutCancel(ctx), sc.Name, s.now(), clip(msg)); err != nil {
			s.log().Error("scan schedules: finish", "schedule", sc.Name, "error", err)
		}
	}
	return ran
}

// RunSchedule scans a schedule's targets and records what it saw. The
// error names the targets that could not be read, if any; what was read is
// recorded all the same.
func (s *Scheduler) RunSchedule(ctx context.Context, sc store.ScanSchedule) ([]Result, error) {
	opts, err := DecodeScheduleOptions(sc.Options)
	if err != nil {
		return nil, err
	}
	targets, err := ParseTargets(sc.Targets, TargetOptions{SNI: opts.SNI, StartTLS: opts.StartTLS, AllowLarge: opts.AllowLarge, NetworkOnly: true})
	if err != nil {
		return nil, err
	}
	at := s.now()
	scanner := &Scanner{Policy: s.Inventory.Policy, Timeout: time.Duration(opts.Timeout), Dialer: s.Guard.Dialer()}
	results := scanner.Scan(ctx, targets)
	// Keep what was scanned for two intervals, so that one failed or late
	// run does not make certificates come and go.
	hold := max(2*sc.Every, DefaultHold)
	if _, err := s.Inventory.Record(ctx, at, Covered(results), hold, opts.Labels, results); err != nil {
		return results, err
	}
	var failed []string
	for _, r := range results {
		if r.Error != "" && !r.Silent {
			failed = append(failed, r.Target+": "+r.Error)
		}
	}
	switch len(failed) {
	case 0:
		return results, nil
	case 1:
		return results, errors.New(failed[0])
	default:
		return results, fmt.Errorf("%s (and %d more targets failed)", failed[0], len(failed)-1)
	}
}

// Schedules changes scan schedules, each change with its audit record.
type Schedules struct {
	Store store.ScanSchedules
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
}

// Add checks and stores a schedule; its first run is due at once.
func (s *Schedules) Add(ctx context.Context, actor string, sc store.ScanSchedule, opts ScheduleOptions) (store.ScanSchedule, error) {
	if _, err := CheckSchedule(sc.Name, sc.Targets, sc.Every, opts); err != nil {
		return sc, ca.Errorf(ca.KindBadRequest, "%v", err)
	}
	options, err := json.Marshal(opts)
	if err != nil {
		return sc, err
	}
	now := time.Now()
	if s.Clock != nil {
		now = s.Clock()
	}
	sc.Options, sc.NextRun, sc.CreatedAt = options, now, now
	ev := audit.Event{Time: now, Type: audit.TypeScheduleAdded, Actor: actor, Subject: sc.Name, Outcome: "success",
		Detail: map[string]string{"targets": clip(strings.Join(sc.Targets, " ")), "every": duration.Format(sc.Every)}}
	err = s.Store.CreateSchedule(ctx, sc, ev)
	if errors.Is(err, store.ErrConflict) {
		return sc, ca.Errorf(ca.KindConflict, "a scan schedule named %q exists", sc.Name)
	}
	return sc, err
}

// RunNow makes a schedule due at once (the scheduler is to be woken).
func (s *Schedules) RunNow(ctx context.Context, name string) error {
	now := time.Now()
	if s.Clock != nil {
		now = s.Clock()
	}
	if err := s.Store.DueNow(ctx, name, now); errors.Is(err, store.ErrNotFound) {
		return ca.Errorf(ca.KindNotFound, "no scan schedule named %q", clip(name))
	} else if err != nil {
		return err
	}
	return nil
}

// Remove deletes a schedule.
func (s *Schedules) Remove(ctx context.Context, actor, name string) error {
	now := time.Now()
	if s.Clock != nil {
		now = s.Clock()
	}
	ev := audit.Event{Time: now, Type: audit.TypeScheduleRemoved, Actor: actor, Subject: clip(name), Outcome: "success"}
	err := s.Store.DeleteSchedule(ctx, name, ev)
	if errors.Is(err, store.ErrNotFound) {
		return ca.Errorf(ca.KindNotFound, "no scan schedule named %q", clip(name))
	}
	return err
}
