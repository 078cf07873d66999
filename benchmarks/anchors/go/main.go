// Command goanchor is the Go anchor of s3rpc's benchmarks: the same S3 calls that
// benchmarks/run.py sends through the daemon, made straight from aws-sdk-go-v2 (the SDK
// RoadRunner's Go S3 plugin uses), so that s3rpc's CPU per operation can be set beside Go's.
//
// It runs one operation (read, exists, write or presign) from -concurrency goroutines for
// -duration (or until -ops calls are done), after an untimed warm-up of -warmup, and prints
// one JSON line: calls, errors, wall time and this process's own CPU time (getrusage
// RUSAGE_SELF: every thread, the garbage collector and the HTTP transport included) over the
// timed part only. Startup, client construction and the warm-up are not counted.
//
// The client is built as the daemon builds its own: static credentials, the endpoint given,
// path-style addressing, the SDK's standard retryer and an HTTP pool of -pool idle connections
// per host (the SDK's default of 10 would close and reopen connections under 16 concurrent
// calls, a cost that is the pool's, not the SDK's).
//
// Build (offline, with Debian's SDK: apt-get install golang-go golang-github-aws-aws-sdk-go-v2-dev):
//
//	GO111MODULE=off GOPATH=$PWD/gopath:/usr/share/gocode GOPROXY=off go build -o goanchor main.go
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

type settings struct {
	endpoint, region, accessKey, secretKey, bucket string
	op, prefix                                     string
	keys, size, concurrency, pool                  int
	ops                                            int64
	duration, warmup, expires                      time.Duration
}

// result is the one JSON line printed on stdout.
type result struct {
	Op          string  `json:"op"`
	Calls       int64   `json:"calls"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	WallSeconds float64 `json:"wall_s"`
	CPUSeconds  float64 `json:"cpu_s"`
	UserSeconds float64 `json:"user_s"`
	SysSeconds  float64 `json:"sys_s"`
	CPUusPerOp  float64 `json:"cpu_us_per_op"`
	OpsPerS     float64 `json:"ops_per_s"`
	Concurrency int     `json:"concurrency"`
	GoMaxProcs  int     `json:"gomaxprocs"`
	Go          string  `json:"go"`
	SDK         string  `json:"sdk"`
}

func parse() (settings, bool) {
	var s settings
	version := flag.Bool("version", false, "print the Go and SDK versions as JSON and exit")
	flag.StringVar(&s.endpoint, "endpoint", "", "S3 endpoint URL, e.g. http://127.0.0.1:9000")
	flag.StringVar(&s.region, "region", "us-east-1", "signing region")
	flag.StringVar(&s.accessKey, "access-key", os.Getenv("AWS_ACCESS_KEY_ID"), "access key id (default $AWS_ACCESS_KEY_ID)")
	flag.StringVar(&s.secretKey, "secret-key", os.Getenv("AWS_SECRET_ACCESS_KEY"), "secret access key (default $AWS_SECRET_ACCESS_KEY)")
	flag.StringVar(&s.bucket, "bucket", "", "bucket name")
	flag.StringVar(&s.op, "op", "read", "read (GetObject + body), exists (HeadObject), write (PutObject), presign (GET URL)")
	flag.StringVar(&s.prefix, "prefix", "", "key prefix (default r/ for read and exists, w/ for write, p/go/ for presign)")
	flag.IntVar(&s.keys, "keys", 1000, "keys are prefix + %05d of (call number mod keys); 0: a new key every call, prefix + %d")
	flag.IntVar(&s.size, "size", 1024, "object size: the bytes written, and the size every read must return")
	flag.IntVar(&s.concurrency, "concurrency", 16, "goroutines, one call in flight each")
	flag.IntVar(&s.pool, "pool", 64, "idle HTTP connections kept per host")
	flag.Int64Var(&s.ops, "ops", 0, "stop after this many calls (0: run for -duration)")
	flag.DurationVar(&s.duration, "duration", 3*time.Second, "timed part (when -ops is 0)")
	flag.DurationVar(&s.warmup, "warmup", 500*time.Millisecond, "untimed warm-up before it")
	flag.DurationVar(&s.expires, "expires", time.Hour, "presigned URL lifetime")
	flag.Parse()
	if *version {
		return s, true
	}
	if s.prefix == "" {
		s.prefix = map[string]string{"read": "r/", "exists": "r/", "write": "w/", "presign": "p/go/"}[s.op]
	}
	return s, false
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "goanchor: "+format+"\n", args...)
	os.Exit(2)
}

func newClient(s settings) *s3.Client {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = s.pool
		t.MaxIdleConnsPerHost = s.pool
	})
	return s3.New(s3.Options{
		Region:           s.region,
		Credentials:      credentials.NewStaticCredentialsProvider(s.accessKey, s.secretKey, ""),
		EndpointResolver: s3.EndpointResolverFromURL(s.endpoint),
		UsePathStyle:     true,
		HTTPClient:       httpClient,
	})
}

// operation returns the call made for call number i.
func operation(s settings, client *s3.Client) func(ctx context.Context, i int64) error {
	key := func(i int64) *string {
		if s.keys > 0 {
			return aws.String(fmt.Sprintf("%s%05d", s.prefix, i%int64(s.keys)))
		}
		return aws.String(fmt.Sprintf("%s%d", s.prefix, i))
	}
	bucket := aws.String(s.bucket)
	switch s.op {
	case "read":
		return func(ctx context.Context, i int64) error {
			out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: key(i)})
			if err != nil {
				return err
			}
			data, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil {
				return err
			}
			if len(data) != s.size {
				return fmt.Errorf("GetObject returned %d bytes, expected %d", len(data), s.size)
			}
			return nil
		}
	case "exists":
		return func(ctx context.Context, i int64) error {
			_, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: key(i)})
			return err
		}
	case "write":
		content := make([]byte, s.size)
		for j := range content {
			content[j] = byte(j * 7)
		}
		// What s3.Write sends: the body with the bucket's ACL and the detected type.
		return func(ctx context.Context, i int64) error {
			_, err := client.PutObject(ctx, &s3.PutObjectInput{
				Bucket:        bucket,
				Key:           key(i),
				Body:          bytes.NewReader(content),
				ContentLength: int64(len(content)),
				ACL:           types.ObjectCannedACLPrivate,
				ContentType:   aws.String("application/octet-stream"),
			})
			return err
		}
	case "presign":
		presigner := s3.NewPresignClient(client, s3.WithPresignExpires(s.expires))
		return func(ctx context.Context, i int64) error {
			req, err := presigner.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: key(i)})
			if err != nil {
				return err
			}
			if !strings.Contains(req.URL, "X-Amz-Signature=") {
				return fmt.Errorf("presigned URL without a signature: %s", req.URL)
			}
			return nil
		}
	}
	fail("unknown -op %q (read, exists, write, presign)", s.op)
	return nil
}

// run calls op from s.concurrency goroutines until stop is closed or limit calls are made
// (limit 0: no limit); numbering continues from next.
func run(s settings, op func(context.Context, int64) error, next *int64, limit int64, stop <-chan struct{}) (calls, errs int64, first string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := *next
	ctx := context.Background()
	for g := 0; g < s.concurrency; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := atomic.AddInt64(next, 1) - 1
				if limit > 0 && i-start >= limit {
					return
				}
				if err := op(ctx, i); err != nil {
					mu.Lock()
					errs++
					if first == "" {
						first = err.Error()
					}
					tooMany := errs >= 10
					mu.Unlock()
					if tooMany {
						return
					}
					continue
				}
				atomic.AddInt64(&calls, 1)
			}
		}()
	}
	wg.Wait()
	return calls, errs, first
}

func timer(d time.Duration) <-chan struct{} {
	stop := make(chan struct{})
	time.AfterFunc(d, func() { close(stop) })
	return stop
}

func cpuTime() (user, sys float64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fail("getrusage: %v", err)
	}
	return float64(ru.Utime.Nano()) / 1e9, float64(ru.Stime.Nano()) / 1e9
}

func main() {
	s, versionOnly := parse()
	res := result{Op: s.op, Concurrency: s.concurrency, GoMaxProcs: runtime.GOMAXPROCS(0),
		Go: runtime.Version(), SDK: aws.SDKVersion}
	out := json.NewEncoder(os.Stdout)
	if versionOnly {
		_ = out.Encode(map[string]string{"go": res.Go, "sdk": res.SDK})
		return
	}
	if s.endpoint == "" || s.bucket == "" {
		fail("-endpoint and -bucket are required")
	}
	if s.concurrency < 1 {
		fail("-concurrency must be at least 1")
	}
	op := operation(s, newClient(s))
	var next int64
	if s.warmup > 0 {
		if _, errs, first := run(s, op, &next, 0, timer(s.warmup)); errs > 0 {
			fail("warm-up: %d errors, the first: %s", errs, first)
		}
	}
	runtime.GC()
	user0, sys0 := cpuTime()
	started := time.Now()
	var stop <-chan struct{} = make(chan struct{}) // never closed: -ops decides
	if s.ops <= 0 {
		stop = timer(s.duration)
	}
	res.Calls, res.Errors, res.FirstError = run(s, op, &next, s.ops, stop)
	res.WallSeconds = time.Since(started).Seconds()
	user1, sys1 := cpuTime()
	res.UserSeconds, res.SysSeconds = user1-user0, sys1-sys0
	res.CPUSeconds = res.UserSeconds + res.SysSeconds
	if res.Calls > 0 {
		res.CPUusPerOp = 1e6 * res.CPUSeconds / float64(res.Calls)
	}
	if res.WallSeconds > 0 {
		res.OpsPerS = float64(res.Calls) / res.WallSeconds
	}
	_ = out.Encode(res)
	if res.Errors > 0 {
		os.Exit(1)
	}
}
