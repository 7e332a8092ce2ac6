package snapshot

import (
	"fmt"
	"strings"
)

// capabilityXattr holds file capabilities: a file carrying it runs with
// them, as a setuid file runs with its owner's identity.
const capabilityXattr = "security.capability"

// maxPrivilegedShown bounds how many entries an ErrPrivileged error names.
const maxPrivilegedShown = 5

// privileged lists what node would plant in a volume beyond plain data:
// it is a device node, has the setuid or setgid bit, or carries file
// capabilities. "" means nothing.
func privileged(n *Node) string {
	var what []string
	switch n.Type {
	case TypeCharDev, TypeBlockDev:
		what = append(what, fmt.Sprintf("%s %d:%d", n.Type, devMajor(n.Rdev), devMinor(n.Rdev)))
	case TypeHardlink:
		return "" // shares its target's metadata, judged there
	}
	if n.Type != TypeDir {
		// A setgid directory only passes its group on; sticky is harmless.
		if n.Mode&04000 != 0 {
			what = append(what, "setuid")
		}
		if n.Mode&02000 != 0 {
			what = append(what, "setgid")
		}
	}
	for _, x := range n.Xattrs {
		if x.Name == capabilityXattr {
			what = append(what, "file capabilities ("+capabilityXattr+")")
		}
	}
	return strings.Join(what, ", ")
}

// checkUnprivileged fails with ErrPrivileged, naming the first entries, if
// m would plant device nodes, setuid or setgid files or file capabilities.
func checkUnprivileged(m *Manifest) error {
	var found []int
	for i := range m.Nodes {
		if privileged(&m.Nodes[i]) != "" {
			found = append(found, i)
		}
	}
	if len(found) == 0 {
		return nil
	}
	paths := m.Paths()
	var shown []string
	for _, i := range found[:min(len(found), maxPrivilegedShown)] {
		shown = append(shown, fmt.Sprintf("%s (%s)", paths[i], privileged(&m.Nodes[i])))
	}
	more := ""
	if len(found) > maxPrivilegedShown {
		more = fmt.Sprintf(" and %d more", len(found)-maxPrivilegedShown)
	}
	return fmt.Errorf("it holds %s%s; anyone who can write to an unencrypted store can forge its snapshots, so portvol restores these only from an encrypted store or where the host trusts the store's writers (portvol serve --restore-privileged, portvol export --restore-privileged): %w",
		strings.Join(shown, ", "), more, ErrPrivileged)
}

// devMajor and devMinor split a Linux device number (as glibc does).
func devMajor(dev uint64) uint64 { return (dev>>8)&0xfff | (dev>>32)&^0xfff }
func devMinor(dev uint64) uint64 { return dev&0xff | (dev>>12)&^0xff }
