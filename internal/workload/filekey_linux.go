//go:build linux

package workload

import (
	"io/fs"
	"syscall"
)

// fileKeyOf identifies a version of a file: its device and inode, size and
// change times, so a replaced or rewritten binary is hashed again.
func fileKeyOf(fi fs.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, true
}
