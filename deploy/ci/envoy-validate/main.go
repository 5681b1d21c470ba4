// envoy-validate checks Envoy bootstrap files (YAML) against Envoy's own API:
// every field must exist in the v3 protos (unknown fields fail), every
// typed_config must name a known extension type, and the protoc-gen-validate
// rules of every message (ranges, required fields, enums) must hold,
// including inside typed_config. Used by scripts/check-deploy.
//
//	envoy-validate FILE...
package main

import (
	"fmt"
	"os"

	bootstrap "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/udp/udp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

type validator interface{ ValidateAll() error }

// check validates m and, recursively, every message packed in an Any below it
// (generated validators stop at Any).
func check(m proto.Message, path string) []string {
	var errs []string
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", path, err))
		}
	}
	var walk func(r protoreflect.Message, p string)
	walk = func(r protoreflect.Message, p string) {
		if a, ok := r.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: typed_config %s: %v", p, a.GetTypeUrl(), err))
				return
			}
			errs = append(errs, check(inner, p+"<"+string(inner.ProtoReflect().Descriptor().FullName())+">")...)
			return
		}
		r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			fp := p + "." + string(fd.Name())
			switch {
			case fd.IsList() && fd.Message() != nil:
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", fp, i))
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message(), fmt.Sprintf("%s[%v]", fp, k.Interface()))
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message(), fp)
			}
			return true
		})
	}
	walk(m.ProtoReflect(), path)
	return errs
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: envoy-validate FILE...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err == nil {
			data, err = yaml.YAMLToJSON(data)
		}
		var b bootstrap.Bootstrap
		if err == nil {
			err = protojson.Unmarshal(data, &b)
		}
		if err != nil {
			fmt.Printf("FAIL %s: %v\n", path, err)
			failed = true
			continue
		}
		errs := check(&b, "bootstrap")
		for _, e := range errs {
			fmt.Printf("FAIL %s: %s\n", path, e)
		}
		if len(errs) > 0 {
			failed = true
			continue
		}
		fmt.Printf("ok   %s: %d listeners, %d clusters\n", path,
			len(b.GetStaticResources().GetListeners()), len(b.GetStaticResources().GetClusters()))
	}
	if failed {
		os.Exit(1)
	}
}
