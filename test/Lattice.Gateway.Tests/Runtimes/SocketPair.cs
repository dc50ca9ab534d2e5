using System.IO.Pipelines;
using System.Net.WebSockets;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>A runtime link's two WebSockets over in-memory pipes: no network, no timers of their own.</summary>
public static class SocketPair
{
    private sealed class Duplex(PipeReader reader, Stream write) : Stream
    {
        private readonly Stream read = reader.AsStream();

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() => write.Flush();
        public override Task FlushAsync(CancellationToken cancellationToken) => write.FlushAsync(cancellationToken);
        public override int Read(byte[] buffer, int offset, int count) => read.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => read.ReadAsync(buffer, cancellationToken);
        public override void Write(byte[] buffer, int offset, int count) => write.Write(buffer, offset, count);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => write.WriteAsync(buffer, cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                // Like a socket that is closed: a pending read ends.
                reader.CancelPendingRead();
                write.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    public static (WebSocket Gateway, WebSocket Daemon) Create()
    {
        var toGateway = new Pipe();
        var toDaemon = new Pipe();
        var gateway = WebSocket.CreateFromStream(new Duplex(toGateway.Reader, toDaemon.Writer.AsStream()),
            new WebSocketCreationOptions { IsServer = true, KeepAliveInterval = TimeSpan.Zero });
        var daemon = WebSocket.CreateFromStream(new Duplex(toDaemon.Reader, toGateway.Writer.AsStream()),
            new WebSocketCreationOptions { IsServer = false, KeepAliveInterval = TimeSpan.Zero });
        return (gateway, daemon);
    }
}
