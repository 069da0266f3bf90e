package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

func init() {
	RegisterProvider("awskms", func() (Provider, error) {
		return &awsKMSProvider{clients: map[string]*kms.Client{}}, nil
	})
}

// awsKMSURI is what meshpki takes from an AWS KMS key URI:
//
//	awskms:///alias/meshpki-int?region=eu-west-1
//	awskms:///1234abcd-12ab-34cd-56ef-1234567890ab?region=eu-west-1&endpoint=https://kms.internal.example
//
// The path is the key: its id, its ARN, or alias/NAME. region is required
// unless the environment gives one (AWS_REGION); endpoint replaces AWS's
// (a VPC endpoint, a KMS-compatible service). Credentials come from the AWS
// SDK's default chain: the environment, the shared files, the instance's
// role.
type awsKMSURI struct {
	Key, Region, Endpoint string
}

func parseAWSKMSURI(uri string) (awsKMSURI, error) {
	var k awsKMSURI
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "awskms" {
		return k, fmt.Errorf("keys: %q is not an awskms: URI", clip(uri))
	}
	if u.Host != "" {
		return k, fmt.Errorf("keys: an awskms: URI has no host (awskms:///KEY?region=…), not %q", clip(u.Host))
	}
	k.Key = strings.TrimPrefix(u.Path, "/")
	for name, values := range u.Query() {
		v := values[len(values)-1]
		switch name {
		case "region":
			k.Region = v
		case "endpoint":
			e, err := url.Parse(v)
			if err != nil || (e.Scheme != "https" && e.Scheme != "http") || e.Host == "" {
				return k, fmt.Errorf("keys: awskms endpoint %q is not an http(s) URL", clip(v))
			}
			k.Endpoint = v
		default:
			return k, fmt.Errorf("keys: awskms URI query attribute %q is not one meshpki knows (region, endpoint)", clip(name))
		}
	}
	return k, nil
}

// uri is k as a key URI, naming key.
func (k awsKMSURI) uri(key string) string {
	q := url.Values{}
	if k.Region != "" {
		q.Set("region", k.Region)
	}
	if k.Endpoint != "" {
		q.Set("endpoint", k.Endpoint)
	}
	s := "awskms:///" + key
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// awsKMSProvider keeps keys in AWS KMS: the private key never leaves it,
// and each signature is a Sign call with the digest.
type awsKMSProvider struct {
	mu      sync.Mutex
	clients map[string]*kms.Client // by region and endpoint
}

// kmsTimeout bounds each call to KMS.
const kmsTimeout = 30 * time.Second

func (p *awsKMSProvider) client(ctx context.Context, k awsKMSURI) (*kms.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := k.Region + "\x00" + k.Endpoint
	if c, ok := p.clients[id]; ok {
		return c, nil
	}
	var opts []func(*awsconfig.LoadOptions) error
	if k.Region != "" {
		opts = append(opts, awsconfig.WithRegion(k.Region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("keys: AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("keys: the awskms URI needs region=… (or AWS_REGION in the environment)")
	}
	c := kms.NewFromConfig(cfg, func(o *kms.Options) {
		if k.Endpoint != "" {
			o.BaseEndpoint = aws.String(k.Endpoint)
		}
	})
	p.clients[id] = c
	return c, nil
}

// kmsError explains a KMS failure, naming the key but not the query.
func kmsError(what, key string, err error) error {
	var nf *types.NotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("keys: %s: there is no KMS key %s: %w", what, clip(key), fs.ErrNotExist)
	}
	return fmt.Errorf("keys: %s (KMS key %s): %w", what, clip(key), err)
}

var kmsKeySpecs = map[KeyType]types.KeySpec{
	ECP256:  types.KeySpecEccNistP256,
	ECP384:  types.KeySpecEccNistP384,
	RSA2048: types.KeySpecRsa2048,
	RSA3072: types.KeySpecRsa3072,
	RSA4096: types.KeySpecRsa4096,
}

// Generate creates a signing key of type kt in KMS; if the URI's path is
// alias/NAME, the alias is made to name it (and must not exist yet). The
// URI returned names the new key by its id, so ca.json keeps naming this
// key even if the alias is later moved.
func (p *awsKMSProvider) Generate(ctx context.Context, uri string, kt KeyType) (crypto.Signer, string, error) {
	k, err := parseAWSKMSURI(uri)
	if err != nil {
		return nil, "", err
	}
	spec, ok := kmsKeySpecs[kt]
	if !ok {
		return nil, "", fmt.Errorf("keys: %s keys cannot be kept in AWS KMS by meshpki: use ec-p256, ec-p384 or rsa-2048 to rsa-4096", kt)
	}
	alias, isAlias := strings.CutPrefix(k.Key, "alias/")
	if k.Key != "" && !isAlias {
		return nil, "", fmt.Errorf("keys: KMS chooses a new key's id: to generate, give awskms:///alias/NAME or awskms:/// (not the key %s)", clip(k.Key))
	}
	c, err := p.client(ctx, k)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, kmsTimeout)
	defer cancel()
	if isAlias {
		_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(k.Key)})
		var nf *types.NotFoundException
		switch {
		case err == nil:
			return nil, "", fmt.Errorf("keys: %s already names a KMS key; without --generate meshpki uses it: %w", clip(k.Key), fs.ErrExist)
		case !errors.As(err, &nf):
			return nil, "", kmsError("look for the alias", k.Key, err)
		}
	}
	created, err := c.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec:     spec,
		KeyUsage:    types.KeyUsageTypeSignVerify,
		Description: aws.String("meshpki CA key " + k.Key),
	})
	if err != nil {
		return nil, "", kmsError("create the key", k.Key, err)
	}
	id := aws.ToString(created.KeyMetadata.KeyId)
	if isAlias {
		if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/" + alias), TargetKeyId: aws.String(id)}); err != nil {
			return nil, "", kmsError("name the new key "+id, k.Key, err)
		}
	}
	s, err := p.open(ctx, c, id)
	if err != nil {
		return nil, "", err
	}
	return s, k.uri(id), nil
}

// Open returns a signer for the existing key the URI names; its public
// key is fetched from KMS.
func (p *awsKMSProvider) Open(ctx context.Context, uri string) (crypto.Signer, error) {
	k, err := parseAWSKMSURI(uri)
	if err != nil {
		return nil, err
	}
	if k.Key == "" {
		return nil, errors.New("keys: the awskms URI names no key (awskms:///KEY-ID or awskms:///alias/NAME)")
	}
	c, err := p.client(ctx, k)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, kmsTimeout)
	defer cancel()
	return p.open(ctx, c, k.Key)
}

func (p *awsKMSProvider) open(ctx context.Context, c *kms.Client, key string) (crypto.Signer, error) {
	out, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(key)})
	if err != nil {
		return nil, kmsError("fetch the public key", key, err)
	}
	if out.KeyUsage != types.KeyUsageTypeSignVerify {
		return nil, fmt.Errorf("keys: KMS key %s is for %s, not SIGN_VERIFY", clip(key), out.KeyUsage)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("keys: KMS key %s: parse its public key: %w", clip(key), err)
	}
	if _, err := TypeOf(pub); err != nil {
		return nil, err
	}
	return &kmsSigner{c: c, key: aws.ToString(out.KeyId), pub: pub}, nil
}

func (p *awsKMSProvider) Close() error { return nil }

// kmsSigner signs digests with KMS.
type kmsSigner struct {
	c   *kms.Client
	key string
	pub crypto.PublicKey
}

func (s *kmsSigner) Public() crypto.PublicKey { return s.pub }

func (s *kmsSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	alg, err := kmsAlgorithm(s.pub, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), kmsTimeout)
	defer cancel()
	out, err := s.c.Sign(ctx, &kms.SignInput{KeyId: aws.String(s.key), Message: digest, MessageType: types.MessageTypeDigest, SigningAlgorithm: alg})
	if err != nil {
		return nil, kmsError("sign", s.key, err)
	}
	return out.Signature, nil
}

// kmsAlgorithm is the KMS signing algorithm for a key and a crypto.Signer
// request. KMS returns ECDSA signatures DER-encoded, as Go's are.
func kmsAlgorithm(pub crypto.PublicKey, opts crypto.SignerOpts) (types.SigningAlgorithmSpec, error) {
	h := opts.HashFunc()
	switch pub.(type) {
	case *ecdsa.PublicKey:
		switch h {
		case crypto.SHA256:
			return types.SigningAlgorithmSpecEcdsaSha256, nil
		case crypto.SHA384:
			return types.SigningAlgorithmSpecEcdsaSha384, nil
		case crypto.SHA512:
			return types.SigningAlgorithmSpecEcdsaSha512, nil
		}
	case *rsa.PublicKey:
		_, pss := opts.(*rsa.PSSOptions)
		switch {
		case h == crypto.SHA256 && pss:
			return types.SigningAlgorithmSpecRsassaPssSha256, nil
		case h == crypto.SHA384 && pss:
			return types.SigningAlgorithmSpecRsassaPssSha384, nil
		case h == crypto.SHA512 && pss:
			return types.SigningAlgorithmSpecRsassaPssSha512, nil
		case h == crypto.SHA256:
			return types.SigningAlgorithmSpecRsassaPkcs1V15Sha256, nil
		case h == crypto.SHA384:
			return types.SigningAlgorithmSpecRsassaPkcs1V15Sha384, nil
		case h == crypto.SHA512:
			return types.SigningAlgorithmSpecRsassaPkcs1V15Sha512, nil
		}
	}
	return "", fmt.Errorf("keys: KMS cannot sign a %v digest with a %T", h, pub)
}

// GenerateMAC creates an HMAC_256 key in KMS, named by the URI's alias.
func (p *awsKMSProvider) GenerateMAC(ctx context.Context, uri string) (string, error) {
	k, err := parseAWSKMSURI(uri)
	if err != nil {
		return "", err
	}
	alias, isAlias := strings.CutPrefix(k.Key, "alias/")
	if !isAlias {
		return "", fmt.Errorf("keys: to generate the token MAC key in KMS give awskms:///alias/NAME, not %q", clip(k.Key))
	}
	c, err := p.client(ctx, k)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, kmsTimeout)
	defer cancel()
	var nf *types.NotFoundException
	if _, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(k.Key)}); err == nil {
		return "", fmt.Errorf("keys: %s already names a KMS key: %w", clip(k.Key), fs.ErrExist)
	} else if !errors.As(err, &nf) {
		return "", kmsError("look for the alias", k.Key, err)
	}
	created, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac,
		Description: aws.String("meshpki token MAC key " + k.Key)})
	if err != nil {
		return "", kmsError("create the MAC key", k.Key, err)
	}
	id := aws.ToString(created.KeyMetadata.KeyId)
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/" + alias), TargetKeyId: aws.String(id)}); err != nil {
		return "", kmsError("name the new key "+id, k.Key, err)
	}
	return k.uri(id), nil
}

// OpenMAC returns an HMAC-SHA256 that KMS computes (GenerateMac) with the
// key the URI names, which must be an HMAC_256 GENERATE_VERIFY_MAC key.
func (p *awsKMSProvider) OpenMAC(ctx context.Context, uri string) (MAC, error) {
	k, err := parseAWSKMSURI(uri)
	if err != nil {
		return nil, err
	}
	c, err := p.client(ctx, k)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, kmsTimeout)
	defer cancel()
	out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(k.Key)})
	if err != nil {
		return nil, kmsError("describe the MAC key", k.Key, err)
	}
	if md := out.KeyMetadata; md.KeyUsage != types.KeyUsageTypeGenerateVerifyMac || md.KeySpec != types.KeySpecHmac256 {
		return nil, fmt.Errorf("keys: KMS key %s is %s for %s, not HMAC_256 for GENERATE_VERIFY_MAC", clip(k.Key), md.KeySpec, md.KeyUsage)
	}
	return &kmsMAC{c: c, key: aws.ToString(out.KeyMetadata.KeyId)}, nil
}

// kmsMAC computes HMAC-SHA256 in KMS.
type kmsMAC struct {
	c   *kms.Client
	key string
}

func (m *kmsMAC) MAC(data []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kmsTimeout)
	defer cancel()
	out, err := m.c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: aws.String(m.key), Message: data, MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMACUnavailable, kmsError("compute a MAC", m.key, err))
	}
	return out.Mac, nil
}
