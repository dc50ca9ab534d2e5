using System.Text;
using Lattice.Protocol.Runtime;
using Lattice.Protocol.Sealing;

namespace Lattice.Protocol.Tests.Sealing;

public sealed class WorkKeyTests : IDisposable
{
    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-workkey-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dataDir))
        {
            Directory.Delete(_dataDir, recursive: true);
        }
    }

    [Fact]
    public void The_first_load_makes_an_owner_only_key_and_later_loads_return_it()
    {
        Assert.Null(WorkKey.Load(_dataDir));
        using var made = WorkKey.LoadOrCreate(_dataDir);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(WorkKey.PathIn(_dataDir)));
        }
        using var again = WorkKey.LoadOrCreate(_dataDir);
        Assert.Equal(made.PublicKey, again.PublicKey);
        Assert.Equal(made.Fingerprint, WorkKey.FingerprintOf(again.PublicKeyText));
        Assert.Matches("^[0-9a-f]{4}(-[0-9a-f]{4}){7}$", made.Fingerprint);

        // The loaded private key opens what was sealed to the published public key.
        var sealedBody = SealedRequest.Seal("x"u8, WorkKey.ParsePublic(made.PublicKeyText), "r", "l", out _);
        Assert.Equal("x"u8.ToArray(), SealedRequest.Open(sealedBody, again.Key, "r", "l", out _));
        // …and so does its opener, which keeps the session; its signatures verify against the published key.
        Assert.Equal("x"u8.ToArray(), again.Opener.Open(sealedBody, "r", "l", out _));
        Assert.Equal(1, again.Opener.Sessions);
        var signed = again.Sign(new DispatchEnd(3, 4, 0), "r", "l");
        Assert.True(SealedUsage.Verify(signed, made.PublicKey, "r", "l"));
        Assert.True(SealedUsage.Verify(again.Sign(new DispatchEnd(3, 5, 0), "r", "l"), made.PublicKey, "r", "l"));
    }

    [Theory]
    [InlineData("not base64!")]
    [InlineData("AAAA")]
    // 0x04 and 64 zero bytes: the right length, not a point on the curve.
    [InlineData("BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    public void Published_text_that_is_not_a_p256_point_is_refused(string text)
    {
        Assert.Null(WorkKey.ParsePublic(text));
        Assert.Null(WorkKey.FingerprintOf(text));
    }

    [Fact]
    public void The_hello_carries_the_key_as_public_work_key_only_when_there_is_one()
    {
        static string Json(HelloMessage hello) => Encoding.UTF8.GetString(Frame.Json(FrameType.Hello, 0, hello, ProtocolJsonContext.Default.HelloMessage).AsSpan(Frame.HeaderSize));
        using var key = WorkKey.LoadOrCreate(_dataDir);
        Assert.Contains($"\"public_work_key\":\"{key.PublicKeyText}\"", Json(new HelloMessage("1", 1, [], PublicWorkKey: key.PublicKeyText)), StringComparison.Ordinal);
        Assert.DoesNotContain("public_work_key", Json(new HelloMessage("1", 1, [])), StringComparison.Ordinal);

        var read = Frame.ReadJson(Frame.Json(FrameType.Hello, 0, new HelloMessage("1", 1, [], PublicWorkKey: key.PublicKeyText), ProtocolJsonContext.Default.HelloMessage).AsMemory(Frame.HeaderSize), ProtocolJsonContext.Default.HelloMessage);
        Assert.Equal(key.PublicKeyText, read!.PublicWorkKey);
    }
}
