package workload

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ExitedError reports that a caller's process exited before it could be
// attested. Its pid may already name another process, so nothing read about
// that pid can be trusted.
type ExitedError struct {
	PID int32
}

func (e *ExitedError) Error() string {
	return fmt.Sprintf("workload: caller process %d exited before it could be attested", e.PID)
}

// errPIDNotVisible is returned for a caller whose pid the kernel reported as
// 0: it runs in a pid namespace this process cannot see into.
var errPIDNotVisible = errors.New("workload: caller's pid is not visible in this pid namespace")

// Attest returns the selectors of process pid, which connected with uid and
// gid, as the package documentation defines them. It reads /proc afresh and
// hashes the binary on every call; the Server caches hashes and names. It
// returns an *ExitedError if the process does not exist (or is a zombie).
func Attest(pid int32, uid, gid uint32) ([]string, error) {
	var a attestor
	return a.attest(pid, uid, gid, nil)
}

// attestor derives selectors. Its caches may be nil.
type attestor struct {
	hashes *hashCache
	names  *nameCache
}

// attest derives the selectors of pid. exited, when not nil, reports whether
// the process that connected has exited; it is asked after /proc was read, so
// that what was read is known to describe that process and not a successor
// that reused its pid.
func (a *attestor) attest(pid int32, uid, gid uint32, exited func() bool) ([]string, error) {
	if pid <= 0 {
		return nil, errPIDNotVisible
	}
	dir := "/proc/" + strconv.Itoa(int(pid))
	groups, err := readStatusGroups(dir + "/status")
	if err != nil {
		return nil, procError(pid, err)
	}

	var path, sum string
	exe, err := os.Readlink(dir + "/exe")
	switch {
	case err == nil:
		// A binary deleted or replaced since exec reads as "PATH (deleted)":
		// the path no longer names what runs, so it yields no selector.
		if !strings.HasSuffix(exe, " (deleted)") {
			path = exe
		}
		if sum, err = a.hashes.sum(dir + "/exe"); err != nil && !errors.Is(err, fs.ErrPermission) {
			return nil, procError(pid, err)
		}
	case errors.Is(err, fs.ErrPermission):
		// We may not inspect this process: no path or sha256 selectors.
	default:
		return nil, procError(pid, err)
	}

	if exited != nil && exited() {
		return nil, &ExitedError{PID: pid}
	}

	selectors := make([]string, 0, 4+2*(len(groups)+1))
	selectors = append(selectors, "unix:uid:"+strconv.FormatUint(uint64(uid), 10))
	if name := a.names.user(uid); name != "" {
		selectors = append(selectors, "unix:user:"+name)
	}
	gids := append([]uint32{gid}, groups...)
	for i, g := range gids {
		if i > 0 && containsGID(gids[:i], g) {
			continue
		}
		selectors = append(selectors, "unix:gid:"+strconv.FormatUint(uint64(g), 10))
	}
	for i, g := range gids {
		if i > 0 && containsGID(gids[:i], g) {
			continue
		}
		if name := a.names.group(g); name != "" {
			selectors = append(selectors, "unix:group:"+name)
		}
	}
	if path != "" {
		selectors = append(selectors, "unix:path:"+path)
	}
	if sum != "" {
		selectors = append(selectors, "unix:sha256:"+sum)
	}
	return selectors, nil
}

func containsGID(gids []uint32, g uint32) bool {
	for _, x := range gids {
		if x == g {
			return true
		}
	}
	return false
}

// procError turns an error reading /proc/PID into an *ExitedError when the
// process is gone.
func procError(pid int32, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) || errors.Is(err, errZombie) {
		return &ExitedError{PID: pid}
	}
	return fmt.Errorf("workload: attesting pid %d: %w", pid, err)
}

var errZombie = errors.New("process is a zombie")

// readStatusGroups returns the supplementary groups from /proc/PID/status.
func readStatusGroups(name string) ([]uint32, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var groups []uint32
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("State:")):
			if f := bytes.Fields(line[len("State:"):]); len(f) > 0 && (string(f[0]) == "Z" || string(f[0]) == "X") {
				return nil, errZombie
			}
		case bytes.HasPrefix(line, []byte("Groups:")):
			for _, f := range bytes.Fields(line[len("Groups:"):]) {
				g, err := strconv.ParseUint(string(f), 10, 32)
				if err != nil {
					return nil, fmt.Errorf("parsing %s: bad group %q", name, f)
				}
				groups = append(groups, uint32(g))
			}
			return groups, nil
		}
	}
	return groups, sc.Err()
}

// hashCache remembers the SHA-256 of binaries by file identity, so that an
// unchanged binary is hashed once. A nil *hashCache hashes every time.
type hashCache struct {
	mu      sync.Mutex
	entries map[fileKey]*hashEntry
}

// fileKey identifies a file's content without reading it: ctime changes on
// every write and cannot be set by users, unlike mtime.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

type hashEntry struct {
	done chan struct{} // closed when sum and err are set
	sum  string
	err  error
}

const maxHashEntries = 4096

func newHashCache() *hashCache {
	return &hashCache{entries: make(map[fileKey]*hashEntry)}
}

// sum returns the lowercase hex SHA-256 of the file that name opens (for
// /proc/PID/exe: the executing file, wherever its path now points).
func (c *hashCache) sum(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", name)
	}
	if c == nil {
		return hashFile(f)
	}
	key, ok := fileKeyOf(fi)
	if !ok {
		return hashFile(f)
	}

	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		c.mu.Unlock()
		<-e.done
		return e.sum, e.err
	}
	if len(c.entries) >= maxHashEntries {
		for k, e := range c.entries {
			select {
			case <-e.done:
				delete(c.entries, k)
			default:
			}
		}
	}
	e := &hashEntry{done: make(chan struct{})}
	c.entries[key] = e
	c.mu.Unlock()

	e.sum, e.err = hashFile(f)
	if e.err != nil {
		c.mu.Lock()
		delete(c.entries, key)
		c.mu.Unlock()
	}
	close(e.done)
	return e.sum, e.err
}

func hashFile(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// nameCache remembers user and group names (and their absence) for ttl. A nil
// *nameCache looks names up every time.
type nameCache struct {
	ttl    time.Duration
	mu     sync.Mutex
	users  map[uint32]cachedName
	groups map[uint32]cachedName
}

type cachedName struct {
	name    string // "" when unknown
	expires time.Time
}

const maxCachedNames = 4096

func newNameCache(ttl time.Duration) *nameCache {
	return &nameCache{ttl: ttl, users: make(map[uint32]cachedName), groups: make(map[uint32]cachedName)}
}

func (c *nameCache) user(uid uint32) string {
	if c == nil {
		return lookupUser(uid)
	}
	return c.lookup(uid, c.users, lookupUser)
}

func (c *nameCache) group(gid uint32) string {
	if c == nil {
		return lookupGroup(gid)
	}
	return c.lookup(gid, c.groups, lookupGroup)
}

func (c *nameCache) lookup(id uint32, m map[uint32]cachedName, look func(uint32) string) string {
	now := time.Now()
	c.mu.Lock()
	n, ok := m[id]
	c.mu.Unlock()
	if ok && now.Before(n.expires) {
		return n.name
	}
	name := look(id)
	c.mu.Lock()
	if len(m) >= maxCachedNames {
		clear(m)
	}
	m[id] = cachedName{name: name, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return name
}

// lookupUser returns uid's user name, or "" if it has none (or the lookup
// failed: a selector we cannot derive is one the caller does not have).
func lookupUser(uid uint32) string {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return ""
	}
	return u.Username
}

func lookupGroup(gid uint32) string {
	g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10))
	if err != nil {
		return ""
	}
	return g.Name
}
