// Package s3test starts a real S3 server for tests: versitygw on
// 127.0.0.1, on a free port, over a temp directory, killed when the test
// ends. Tests of any package that need S3 call Start.
//
// When PORTVOL_TEST_S3_ENDPOINT, PORTVOL_TEST_S3_ACCESS_KEY,
// PORTVOL_TEST_S3_SECRET_KEY and PORTVOL_TEST_S3_BUCKET are all set, Start
// returns that server instead (AWS, MinIO, Ceph RGW); tests then keep to
// their own Prefix. PORTVOL_TEST_S3_REGION optionally sets the region.
//
// The versitygw binary is found through PORTVOL_VERSITYGW (the Makefile
// exports it), then .tools/bin/versitygw in the module root (make tools),
// then PATH. Without it Start skips the test with the reason, except under
// CI=true or PORTVOL_REQUIRE_S3=1, where it fails.
//
// It owns: starting, stopping and restarting the server process. It must
// not know portvol's stores or formats: it imports nothing of the module.
package s3test
