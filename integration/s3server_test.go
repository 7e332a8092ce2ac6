package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/portvol/portvol/internal/s3test"
)

// s3Server is a versitygw process with the posix backend, started for one
// test on an address host B's network namespace reaches. Its data
// directory is on the machine's disk (not tmpfs), so the store behaves
// like a real one; its root credentials are random and reach the plugins
// only through credentials files.
type s3Server struct{ *s3test.Server }

func startS3Server(t testing.TB, ip string) *s3Server {
	t.Helper()
	return &s3Server{s3test.StartOn(t, ip, diskTempDir)}
}

// credentialsFile is the content of an AWS shared credentials file for
// the server's root user.
func (s *s3Server) credentialsFile() string {
	return fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s.AccessKey, s.SecretKey)
}

// storeURL is the PORTVOL_STORE value for prefix, reached at endpoint
// ("IP:PORT": the server itself or a relay in front of it).
func (s *s3Server) storeURL(prefix, endpoint string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=http://%s&region=%s", s.Bucket, prefix, endpoint, s.Region)
}

// objects counts the objects under prefix and their bytes, straight from
// the posix backend's directory: what the store holds, whoever wrote it.
func (s *s3Server) objects(prefix string) (n int, bytes int64) {
	root := filepath.Join(s.DataDir(), s.Bucket, prefix)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n++
			bytes += fi.Size()
		}
		return nil
	})
	return n, bytes
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func randomName(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}
