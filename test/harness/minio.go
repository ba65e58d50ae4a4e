package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/request"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/pullgate/pullgate/test/tools"
)

// S3 is a real S3 server (MinIO, from test/tools/install.sh) on loopback,
// with one bucket, for stores shared by several pullgate replicas.
type S3 struct {
	Endpoint  string // http://127.0.0.1:port
	Bucket    string
	AccessKey string
	SecretKey string
	Client    *s3.S3 // for tests that look at (or damage) the objects

	bin, dir string
	port     int

	mu   sync.Mutex
	proc *minioProc // nil while stopped
}

// minioProc is one run of the MinIO server.
type minioProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *lockedBuffer
}

// StartS3 starts MinIO with its own data directory and creates a bucket. It
// waits for MinIO with the test's deadline (StartContext), and stops it
// when the test ends.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	s := &S3{Bucket: "pullgate", AccessKey: "pullgate-test", SecretKey: "pullgate-test-secret",
		bin: tools.Need(t, "minio"), dir: t.TempDir()}
	ctx := StartContext(t)
	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		s.port = FreePort(t)
		s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(s.port)
		if err = s.start(ctx); !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Cleanup(func() {
		out := s.Kill()
		if t.Failed() {
			t.Logf("minio log (last run):\n%s", out)
		}
	})
	if err != nil {
		t.Fatalf("minio: %v", err)
	}
	sess, err := session.NewSession(&aws.Config{
		Endpoint: aws.String(s.Endpoint), Region: aws.String("us-east-1"), S3ForcePathStyle: aws.Bool(true),
		Credentials: credentials.NewStaticCredentials(s.AccessKey, s.SecretKey, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Client = s3.New(sess)
	if err := s.createBucket(ctx); err != nil {
		t.Fatalf("minio: create bucket %s: %v", s.Bucket, err)
	}
	return s
}

var errPortTaken = errors.New("port taken")

// start runs MinIO on s.port and s.dir and waits until it is ready.
func (s *S3) start(ctx context.Context) error {
	p := &minioProc{done: make(chan struct{}), out: &lockedBuffer{}}
	p.cmd = exec.Command(s.bin, "server", "--quiet", "--address", "127.0.0.1:"+strconv.Itoa(s.port), s.dir)
	p.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey, "MINIO_BROWSER=off")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	err := waitHTTP(ctx, s.Endpoint+"/minio/health/ready", p.done)
	if errors.Is(err, errExited) {
		s.Kill()
		if portTaken(p.out.String()) {
			return errPortTaken
		}
		return fmt.Errorf("exited while starting:\n%s", p.out.String())
	}
	if err != nil {
		s.Kill()
		return fmt.Errorf("%s: %w\n%s", s.Endpoint, err, p.out.String())
	}
	return nil
}

// createBucket creates the bucket, retrying what a server still starting
// answers (connection errors, 503, "server not initialized") until ctx
// ends. A bucket an earlier attempt created counts.
func (s *S3) createBucket(ctx context.Context) error {
	pause := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := s.Client.CreateBucketWithContext(actx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)})
		cancel()
		var ae awserr.Error
		if errors.As(err, &ae) && (ae.Code() == s3.ErrCodeBucketAlreadyOwnedByYou) {
			return nil
		}
		if err == nil || !transientS3(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not before the test's deadline: %w", err)
		case <-time.After(pause):
		}
		pause = min(pause*2, time.Second)
	}
}

// transientS3 reports whether an S3 error is one a retry can cure: the
// server is not (yet) reachable, busy or initialising, or one attempt
// timed out.
func transientS3(err error) bool {
	var rf awserr.RequestFailure
	if errors.As(err, &rf) && (rf.StatusCode() >= 500 || rf.StatusCode() == http.StatusTooManyRequests) {
		return true
	}
	var ae awserr.Error
	if errors.As(err, &ae) {
		switch ae.Code() {
		case "XMinioServerNotInitialized", "SlowDown", "ServiceUnavailable", "RequestTimeout",
			request.CanceledErrorCode, request.ErrCodeRequestError, request.ErrCodeResponseTimeout:
			return true
		}
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// Kill stops MinIO at once (SIGKILL, as a crash or a lost node would) and
// returns its output. The data directory stays for Restart.
func (s *S3) Kill() string {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return ""
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return p.out.String()
}

// Restart starts MinIO again on the same port and data directory after
// Kill, and waits until it serves the bucket again.
func (s *S3) Restart(t testing.TB) {
	t.Helper()
	ctx := StartContext(t)
	var err error
	for {
		// The port was MinIO's a moment ago: taken means another process
		// grabbed it, or the old socket is not released yet; try again
		// until the deadline.
		if err = s.start(ctx); !errors.Is(err, errPortTaken) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("minio restart: %v", err)
	}
	for {
		_, err := s.Client.HeadBucketWithContext(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.Bucket)})
		if err == nil {
			return
		}
		if !transientS3(err) || ctx.Err() != nil {
			t.Fatalf("minio restart: bucket %s: %v", s.Bucket, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StorageConfig is pullgate's storage section for this server: the s3
// driver under rootdirectory root.
func (s *S3) StorageConfig(root string) map[string]any {
	return map[string]any{
		"driver": "s3",
		"parameters": map[string]any{
			"accesskey": s.AccessKey, "secretkey": s.SecretKey, "region": "us-east-1",
			"regionendpoint": s.Endpoint, "bucket": s.Bucket, "forcepathstyle": true,
			"secure": false, "rootdirectory": root,
		},
	}
}

// Keys lists the object keys under prefix.
func (s *S3) Keys(t testing.TB, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.Client.ListObjectsV2Pages(&s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix)},
		func(p *s3.ListObjectsV2Output, _ bool) bool {
			for _, o := range p.Contents {
				keys = append(keys, *o.Key)
			}
			return true
		})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
