package kubestack

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configure a Stack.
type Options struct {
	// Dir holds data, certificates and logs. Required; tests pass t.TempDir()
	// or a directory that outlives the test for debugging.
	Dir string
	// APIServerArgs are appended to the kube-apiserver's flags.
	APIServerArgs []string
}

// Stack is a running etcd and kube-apiserver with Tekton's CRDs installed.
// Its methods are safe for use by one goroutine at a time.
type Stack struct {
	dir       string
	token     string
	apiPort   int
	etcd      *process
	apiserver *process
	extra     []*process // started by the Tekton tier, stopped first

	// Kubeconfig is the path of an admin kubeconfig for the stack.
	Kubeconfig string
}

// Start starts etcd and kube-apiserver, waits until the API server is
// healthy, and installs Tekton's CRDs. It returns an error wrapping
// ErrNoTools if the binaries are not built.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	etcdBin, err := Tool("etcd")
	if err != nil {
		return nil, err
	}
	apiBin, err := Tool("kube-apiserver")
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("kubestack: Options.Dir is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	s := &Stack{dir: opts.Dir}
	if err := writeCerts(s.dir); err != nil {
		return nil, fmt.Errorf("write certificates: %w", err)
	}
	if err := writeKubeletCert(s.dir); err != nil {
		return nil, fmt.Errorf("write kubelet certificate: %w", err)
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	s.token = hex.EncodeToString(tok)
	// The admin token belongs to system:masters, so RBAC lets it do anything.
	tokens := fmt.Sprintf("%s,kiln-admin,kiln-admin,\"system:masters\"\n", s.token)
	if err := os.WriteFile(s.path("tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}

	clientPort, err := freePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, err
	}
	if s.apiPort, err = freePort(); err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	s.etcd = &process{
		name: "etcd", path: etcdBin, log: s.path("etcd.log"),
		args: []string{
			"--data-dir=" + s.path("etcd"),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=http://127.0.0.1:" + strconv.Itoa(peerPort),
			"--initial-advertise-peer-urls=http://127.0.0.1:" + strconv.Itoa(peerPort),
			"--initial-cluster=default=http://127.0.0.1:" + strconv.Itoa(peerPort),
			"--unsafe-no-fsync",
			"--log-level=warn",
		},
	}
	s.apiserver = &process{
		name: "kube-apiserver", path: apiBin, log: s.path("kube-apiserver.log"),
		args: append([]string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1", // no default route in a private network namespace
			"--secure-port=" + strconv.Itoa(s.apiPort),
			"--tls-cert-file=" + s.path("server.crt"),
			"--tls-private-key-file=" + s.path("server.key"),
			"--client-ca-file=" + s.path("ca.crt"),
			"--token-auth-file=" + s.path("tokens.csv"),
			"--authorization-mode=RBAC",
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + s.path("sa.pub"),
			"--service-account-signing-key-file=" + s.path("sa.key"),
			"--service-cluster-ip-range=10.0.0.0/24",
			// Pods need no token volume and no pre-made ServiceAccount.
			"--disable-admission-plugins=ServiceAccount",
			"--allow-privileged=true",
			// pods/log, exec and port-forward reach kwok, the fake kubelet, at
			// the node's InternalIP (127.0.0.1; its Hostname resolves nowhere)
			// and verify its serving certificate.
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-certificate-authority=" + s.path(kubeletCert),
			"--v=0",
		}, opts.APIServerArgs...),
	}
	if err := s.writeKubeconfig(); err != nil {
		return nil, err
	}
	if err := s.etcd.start(); err != nil {
		return nil, err
	}
	if err := s.StartAPIServer(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	if err := installTektonCRDs(ctx, s.RESTConfig()); err != nil {
		s.Stop()
		return nil, fmt.Errorf("install Tekton CRDs: %w", err)
	}
	return s, nil
}

func (s *Stack) path(name string) string { return filepath.Join(s.dir, name) }

// Dir returns the stack's directory, where the component logs are.
func (s *Stack) Dir() string { return s.dir }

// RESTConfig returns a fresh admin client config with generous rate limits.
func (s *Stack) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            "https://127.0.0.1:" + strconv.Itoa(s.apiPort),
		BearerToken:     s.token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.path("ca.crt")},
		QPS:             1000,
		Burst:           2000,
	}
}

// Kube returns a clientset for the stack.
func (s *Stack) Kube() kubernetes.Interface { return kubernetes.NewForConfigOrDie(s.RESTConfig()) }

func (s *Stack) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kiln-test"] = &clientcmdapi.Cluster{
		Server:               "https://127.0.0.1:" + strconv.Itoa(s.apiPort),
		CertificateAuthority: s.path("ca.crt"),
	}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: s.token}
	cfg.Contexts["kiln-test"] = &clientcmdapi.Context{Cluster: "kiln-test", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "kiln-test"
	s.Kubeconfig = s.path("kubeconfig")
	return clientcmd.WriteToFile(*cfg, s.Kubeconfig)
}

// StartAPIServer starts the kube-apiserver (again) and waits until /readyz
// answers. The port, certificates and tokens are the same on every start.
func (s *Stack) StartAPIServer(ctx context.Context) error {
	if err := s.apiserver.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	hc, err := rest.HTTPClientFor(s.RESTConfig())
	if err != nil {
		return err
	}
	url := s.RESTConfig().Host + "/readyz"
	err = poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := s.apiserver.exited(); err != nil {
			return false, err
		}
		if err := s.etcd.exited(); err != nil {
			return false, err
		}
		resp, err := hc.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver did not become ready: %w; log tail:\n%s", err, tail(s.apiserver.log, 20))
	}
	return nil
}

// StopAPIServer stops the kube-apiserver, dropping every watch, while etcd
// keeps the data.
func (s *Stack) StopAPIServer() { s.apiserver.stop(10 * time.Second) }

// RestartAPIServer stops and starts the kube-apiserver.
func (s *Stack) RestartAPIServer(ctx context.Context) error {
	s.StopAPIServer()
	return s.StartAPIServer(ctx)
}

// Stop stops every process of the stack, newest first.
func (s *Stack) Stop() {
	for i := len(s.extra) - 1; i >= 0; i-- {
		s.extra[i].stop(5 * time.Second)
	}
	s.apiserver.stop(10 * time.Second)
	s.etcd.stop(5 * time.Second)
}

// The fake kubelet's serving certificate and key in the stack's directory.
const kubeletCert, kubeletKey = "kubelet.crt", "kubelet.key"

// writeKubeletCert writes a self-signed serving certificate for 127.0.0.1
// that kwok serves the kubelet API with and the kube-apiserver trusts as its
// kubelet certificate authority.
func writeKubeletCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kiln-test-kubelet"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true, // its own authority
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, kubeletCert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, kubeletKey), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}
