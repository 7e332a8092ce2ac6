package s3_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/s3"
)

const helperEnv = "S3_TEST_UPLOADER"

// TestMain turns the test binary into the uploading process that
// TestS3ClientCrash runs and kills, when helperEnv is set.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		uploaderProcess()
	}
	os.Exit(m.Run())
}

func uploaderProcess() {
	st, err := s3.New(context.Background(), s3.Options{
		Endpoint: os.Getenv("S3_TEST_ENDPOINT"), Region: "us-east-1", Bucket: os.Getenv("S3_TEST_BUCKET"),
		Prefix: "crash/", AccessKey: os.Getenv("S3_TEST_ACCESS"), SecretKey: transfer.Secret(os.Getenv("S3_TEST_SECRET")),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	src := &slowReader{Reader: bytes.NewReader(randomBytes(64 << 20)), rate: 8 << 20}
	go func() {
		for src.read.Load() < 4<<20 {
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Println("uploading")
	}()
	err = st.Put(context.Background(), "pack", src, 64<<20)
	fmt.Fprintln(os.Stderr, "upload ended:", err)
	os.Exit(3)
}

// TestS3ClientCrash: the uploading process is killed mid-upload (a plugin
// crash, an OOM kill). The server must not publish the part it received.
func TestS3ClientCrash(t *testing.T) {
	srv := s3test.Start(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1", "S3_TEST_ENDPOINT="+srv.Endpoint, "S3_TEST_BUCKET="+srv.Bucket,
		"S3_TEST_ACCESS="+srv.AccessKey, "S3_TEST_SECRET="+srv.SecretKey)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "uploading\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("uploader did not start: %q, %v: %s", line, err, stderr.String())
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	st := open(t, options(srv, "crash/"))
	// Give the server a moment to notice the dead connection.
	time.Sleep(500 * time.Millisecond)
	if oi, err := st.Stat(context.Background(), "pack"); !errors.Is(err, transfer.ErrNotExist) {
		t.Fatalf("after the uploader was killed: Stat = %+v, %v; want ErrNotExist, not a truncated object", oi, err)
	}
}
