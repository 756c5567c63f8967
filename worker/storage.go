package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/workflows"
)

// Storage configures the S3 buckets: where image pipelines stage their
// artifacts, where releases (content-addressed objects, manifests) and
// archived logs go. Any S3-compatible server works.
type Storage struct {
	// Endpoint is an S3-compatible endpoint URL. Optional: AWS.
	Endpoint string `json:"endpoint,omitempty"`
	// Region of the buckets. Optional: the SDK's default chain
	// (AWS_REGION, the shared config).
	Region string `json:"region,omitempty"`
	// PathStyle addresses buckets as endpoint/bucket rather than
	// bucket.endpoint, as most S3-compatible servers want.
	PathStyle bool `json:"pathStyle,omitempty"`
	// StagingBucket is where image pipelines write their artifacts.
	// Required.
	StagingBucket string `json:"stagingBucket"`
	// ReleaseBucket holds the promoted artifacts and the manifests.
	// Required.
	ReleaseBucket string `json:"releaseBucket"`
	// LogBucket holds the archived logs. Optional: ReleaseBucket.
	LogBucket string `json:"logBucket,omitempty"`
	// Prefix starts every release and log key, such as "gardenlinux/".
	Prefix string `json:"prefix,omitempty"`
	// Layout is how released files are keyed: gardenlinux (the default:
	// objects/<base>/<file> with Garden Linux's object tags, as glci reads
	// them) or content-addressed (objects/sha256/<hex>, each content once).
	// Manifests are Garden Linux's YAML under meta/singles/<base> in both.
	Layout string `json:"layout,omitempty"`
	// ArchiveLogs archives every PipelineRun's logs after it ends.
	// Optional: default true.
	ArchiveLogs *bool `json:"archiveLogs,omitempty"`
	// Credentials are static keys. Optional: the SDK's default chain
	// (environment, shared files, web identity, instance role).
	Credentials *Credentials `json:"credentials,omitempty"`
}

// Credentials are static AWS keys, read from environment variables or
// files (such as a mounted Kubernetes Secret), never written in the config.
type Credentials struct {
	AccessKeyIDEnv      string `json:"accessKeyIdEnv,omitempty"`
	SecretAccessKeyEnv  string `json:"secretAccessKeyEnv,omitempty"`
	SessionTokenEnv     string `json:"sessionTokenEnv,omitempty"`
	AccessKeyIDFile     string `json:"accessKeyIdFile,omitempty"`
	SecretAccessKeyFile string `json:"secretAccessKeyFile,omitempty"`
}

// Publishing configures how images reach the clouds.
type Publishing struct {
	// S3Only lists platforms whose images are published by promotion to
	// the release bucket alone (kvm, metal, …).
	S3Only []string `json:"s3Only,omitempty"`
	// AWS publishes aws flavours with kiln's own EC2 activities.
	AWS *AWSPublishing `json:"aws,omitempty"`
}

// AWSPublishing configures kiln's AWS publishing: import the raw image,
// register it, copy it to regions, and optionally make it public. Its
// fields are workflows.AWSPlan's (region, regions, public, bucket,
// roleName, bootMode, namePrefix, tags), which builds see, and the
// worker's own below.
type AWSPublishing struct {
	workflows.AWSPlan
	// PollInterval is how often an import or a copy is looked at while
	// it runs. Optional: 15s.
	PollInterval Duration `json:"pollInterval,omitzero"`
	// Endpoint is an EC2-compatible endpoint URL (tests). Optional: AWS.
	Endpoint string `json:"endpoint,omitempty"`
	// Credentials are static keys. Optional: the SDK's default chain.
	Credentials *Credentials `json:"credentials,omitempty"`
}

var bootModes = []string{"uefi", "legacy-bios", "uefi-preferred"}

// storagePlan adds the storage and publishing config to p, reporting
// problems in errs.
func (c Config) storagePlan(p *workflows.Plan) []error {
	var errs []error
	if s := c.Storage; s != nil {
		if s.StagingBucket == "" {
			errs = append(errs, errors.New("storage.stagingBucket: required: the bucket image pipelines write their artifacts to"))
		}
		if s.ReleaseBucket == "" {
			errs = append(errs, errors.New("storage.releaseBucket: required: the bucket releases and manifests go to"))
		}
		if s.Prefix != "" && !strings.HasSuffix(s.Prefix, "/") {
			errs = append(errs, fmt.Errorf("storage.prefix: %q must end with /", s.Prefix))
		}
		switch storage.Layout(s.Layout) {
		case "", storage.LayoutGardenLinux, storage.LayoutContentAddressed:
		default:
			errs = append(errs, fmt.Errorf("storage.layout: %q: want %s (the default) or %s", s.Layout, storage.LayoutGardenLinux, storage.LayoutContentAddressed))
		}
		errs = append(errs, s.Credentials.validate("storage.credentials"))
		p.Storage = &workflows.StoragePlan{
			StagingBucket: s.StagingBucket, ReleaseBucket: s.ReleaseBucket, Prefix: s.Prefix,
			ArchiveLogs: s.ArchiveLogs == nil || *s.ArchiveLogs,
		}
	}
	pub := c.Publishing
	if pub == nil {
		return errs
	}
	p.S3Only = slices.Clone(pub.S3Only)
	for _, pl := range pub.S3Only {
		if _, ok := c.Phases.Publish[pl]; ok {
			errs = append(errs, fmt.Errorf("publishing.s3Only: %s also has phases.publish.%s; keep one", pl, pl))
		}
	}
	if a := pub.AWS; a != nil {
		if c.Storage == nil {
			errs = append(errs, errors.New("publishing.aws: needs storage: the raw image is imported from the release bucket"))
		}
		if a.Region == "" {
			errs = append(errs, errors.New("publishing.aws.region: required: where the snapshot is imported and the image registered"))
		}
		if a.BootMode != "" && !slices.Contains(bootModes, a.BootMode) {
			errs = append(errs, fmt.Errorf("publishing.aws.bootMode: %q: want one of %v", a.BootMode, bootModes))
		}
		for i, r := range a.Regions {
			if strings.TrimSpace(r) == "" {
				errs = append(errs, fmt.Errorf("publishing.aws.regions[%d]: empty", i))
			}
		}
		if _, ok := c.Phases.Publish["aws"]; ok {
			errs = append(errs, errors.New("publishing.aws: phases.publish.aws is also set; keep one"))
		}
		if slices.Contains(pub.S3Only, "aws") {
			errs = append(errs, errors.New("publishing.aws: aws is also in publishing.s3Only; keep one"))
		}
		errs = append(errs, a.Credentials.validate("publishing.aws.credentials"))
		plan := a.AWSPlan
		plan.Regions, plan.Tags = slices.Clone(a.Regions), maps.Clone(a.Tags)
		p.AWS = &plan
	}
	return errs
}

func (cr *Credentials) validate(path string) error {
	if cr == nil {
		return nil
	}
	var errs []error
	for _, k := range []struct{ name, env, file string }{
		{"accessKeyId", cr.AccessKeyIDEnv, cr.AccessKeyIDFile},
		{"secretAccessKey", cr.SecretAccessKeyEnv, cr.SecretAccessKeyFile},
	} {
		switch {
		case k.env != "" && k.file != "":
			errs = append(errs, fmt.Errorf("%s: %sEnv and %sFile are both set; keep one", path, k.name, k.name))
		case k.env == "" && k.file == "":
			errs = append(errs, fmt.Errorf("%s: %sEnv or %sFile is required, or leave credentials out for the SDK's default chain", path, k.name, k.name))
		}
	}
	return errors.Join(errs...)
}

// provider returns the static credentials' provider. The keys are read at
// each retrieval, so a rotated Secret is picked up; a missing one is an
// error naming the variable or file, never showing a key.
func (cr *Credentials) provider(c Config) aws.CredentialsProvider {
	read := func(env, file string) (string, error) {
		if env != "" {
			if v := os.Getenv(env); v != "" {
				return v, nil
			}
			return "", fmt.Errorf("environment variable %s is empty", env)
		}
		b, err := os.ReadFile(c.path(file))
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	return aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		id, err := read(cr.AccessKeyIDEnv, cr.AccessKeyIDFile)
		if err != nil {
			return aws.Credentials{}, fmt.Errorf("access key id: %w", err)
		}
		secret, err := read(cr.SecretAccessKeyEnv, cr.SecretAccessKeyFile)
		if err != nil {
			return aws.Credentials{}, fmt.Errorf("secret access key: %w", err)
		}
		token := ""
		if cr.SessionTokenEnv != "" {
			token = os.Getenv(cr.SessionTokenEnv)
		}
		return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: token, Source: "kiln config"}, nil
	}))
}

// awsConfig loads the SDK config: the default chain, with the region and
// static credentials if given.
func (c Config) awsConfig(ctx context.Context, region string, cr *Credentials) (aws.Config, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	if cr != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(cr.provider(c)))
	}
	return awsconfig.LoadDefaultConfig(ctx, opts...)
}

// S3Client returns the storage's S3 client, or nil without storage.
func (c Config) S3Client(ctx context.Context) (*s3.Client, error) {
	s := c.Storage
	if s == nil {
		return nil, nil
	}
	cfg, err := c.awsConfig(ctx, s.Region, s.Credentials)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if cfg.Region == "" {
		// S3-compatible servers ignore it, but the SDK signs with one.
		cfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if s.Endpoint != "" {
			o.BaseEndpoint = aws.String(s.Endpoint)
		}
		o.UsePathStyle = s.PathStyle
	}), nil
}

// StorageConfig is the storage activities' configuration.
func (c Config) StorageConfig() storage.Config {
	return storage.Config{StagingBucket: c.Storage.StagingBucket, ReleaseBucket: c.Storage.ReleaseBucket, Prefix: c.Storage.Prefix, Layout: storage.Layout(c.Storage.Layout)}
}

// LogBucket is the bucket of archived logs.
func (c Config) LogBucket() string {
	if c.Storage.LogBucket != "" {
		return c.Storage.LogBucket
	}
	return c.Storage.ReleaseBucket
}

// EC2Clients returns a function giving an EC2 client per region, or nil
// without AWS publishing. Clients are made once per region.
func (c Config) EC2Clients(ctx context.Context) (func(region string) *ec2.Client, error) {
	a := c.Publishing.awsOrNil()
	if a == nil {
		return nil, nil
	}
	cfg, err := c.awsConfig(ctx, a.Region, a.Credentials)
	if err != nil {
		return nil, fmt.Errorf("publishing.aws: %w", err)
	}
	var mu sync.Mutex
	clients := map[string]*ec2.Client{}
	return func(region string) *ec2.Client {
		mu.Lock()
		defer mu.Unlock()
		if cl, ok := clients[region]; ok {
			return cl
		}
		cl := ec2.NewFromConfig(cfg, func(o *ec2.Options) {
			o.Region = region
			if a.Endpoint != "" {
				o.BaseEndpoint = aws.String(a.Endpoint)
			}
		})
		clients[region] = cl
		return cl
	}, nil
}

func (p *Publishing) awsOrNil() *AWSPublishing {
	if p == nil {
		return nil
	}
	return p.AWS
}
