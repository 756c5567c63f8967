// Package kubestack runs a real Kubernetes control plane for kiln's tests:
// etcd and kube-apiserver built from source by `make tools`, with Tekton's own
// CRDs installed from the tektoncd/pipeline module, and optionally the real
// Tekton controller, kube-scheduler and kwok (a fake kubelet).
//
// It starts the processes itself rather than through controller-runtime's
// envtest, because tests restart the kube-apiserver in place (same port, same
// serving certificate, same tokens) to prove that a dropped watch loses
// nothing, and the Tekton tier needs a kubeconfig that outlives any one client.
//
// Nothing here binds outside 127.0.0.1.
package kubestack
