package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
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
}

// StartS3 starts MinIO with its own data directory and creates a bucket. It
// stops when the test ends.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin := tools.Need(t, "minio")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &S3{Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), Bucket: "pullgate", AccessKey: "pullgate-test", SecretKey: "pullgate-test-secret"}
	cmd := exec.Command(bin, "server", "--quiet", "--address", fmt.Sprintf("127.0.0.1:%d", port), t.TempDir())
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey, "MINIO_BROWSER=off")
	logf, err := os.CreateTemp(t.TempDir(), "minio-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("minio log:\n%s", b)
			}
		}
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("minio did not come up on %s: %v", s.Endpoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sess, err := session.NewSession(&aws.Config{
		Endpoint: aws.String(s.Endpoint), Region: aws.String("us-east-1"), S3ForcePathStyle: aws.Bool(true),
		Credentials: credentials.NewStaticCredentials(s.AccessKey, s.SecretKey, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Client = s3.New(sess)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client.CreateBucketWithContext(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return s
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
