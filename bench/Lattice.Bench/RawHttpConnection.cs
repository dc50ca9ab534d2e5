using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Lattice.Bench;

/// <summary>
/// One HTTP/1.1 keep-alive connection over a blocking socket, used by one thread. Sends pre-encoded request bytes
/// and reads the response with minimal parsing: status line, headers, then a Content-Length body or a chunked body
/// up to its terminating zero-size chunk. The body is copied out only when a sink is given (for verification).
/// </summary>
internal sealed class RawHttpConnection : IDisposable
{
    private const int BufferSize = 64 * 1024;
    private readonly EndPoint _endPoint;
    private readonly byte[] _buffer = new byte[BufferSize];
    private Socket? _socket;
    private int _start;
    private int _end;

    public RawHttpConnection(EndPoint endPoint)
    {
        _endPoint = endPoint;
    }

    /// <summary>Sends one request and reads its whole response. Returns the status code. Throws on a broken connection or a malformed response.</summary>
    public int Exchange(byte[] request, ArrayBufferWriter<byte>? body)
    {
        var socket = _socket ??= Connect();
        var sent = 0;
        while (sent < request.Length)
        {
            sent += socket.Send(request, sent, request.Length - sent, SocketFlags.None);
        }

        // Headers.
        int headerEnd;
        while ((headerEnd = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8)) < 0)
        {
            Fill();
        }
        var headers = _buffer.AsSpan(_start, headerEnd);
        var status = ParseStatus(headers);
        long contentLength = -1;
        var chunked = false;
        var close = false;
        var lineStart = headers.IndexOf("\r\n"u8);
        while (lineStart >= 0 && lineStart + 2 < headers.Length)
        {
            var rest = headers[(lineStart + 2)..];
            var lineLength = rest.IndexOf("\r\n"u8);
            var line = lineLength < 0 ? rest : rest[..lineLength];
            ParseHeader(line, ref contentLength, ref chunked, ref close);
            lineStart = lineLength < 0 ? -1 : lineStart + 2 + lineLength;
        }
        _start += headerEnd + 4;

        if (chunked)
        {
            ReadChunked(body);
        }
        else if (contentLength >= 0)
        {
            ReadExactly(contentLength, body);
        }
        else if (status is not (204 or 304) && !(status >= 100 && status < 200))
        {
            // No length: the body runs to the end of the connection.
            ReadToClose(body);
            close = true;
        }

        if (close)
        {
            Reset();
        }
        return status;
    }

    /// <summary>Opens the connection now (so connection setup is not part of a measured request).</summary>
    public void EnsureConnected() => _socket ??= Connect();

    /// <summary>Drops the connection; the next exchange opens a new one.</summary>
    public void Reset()
    {
        _socket?.Dispose();
        _socket = null;
        _start = _end = 0;
    }

    public void Dispose() => Reset();

    private Socket Connect()
    {
        var socket = new Socket(_endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
        {
            NoDelay = true,
            ReceiveTimeout = 30_000,
            SendTimeout = 30_000,
        };
        try
        {
            socket.Connect(_endPoint);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        _start = _end = 0;
        return socket;
    }

    /// <summary>Reads more bytes after the unread ones, compacting the buffer when needed.</summary>
    private void Fill()
    {
        if (_start > 0 && (_start == _end || _end == _buffer.Length))
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buffer.Length)
        {
            throw new InvalidDataException("Response headers or chunk header larger than the read buffer.");
        }
        var read = _socket!.Receive(_buffer, _end, _buffer.Length - _end, SocketFlags.None);
        if (read == 0)
        {
            throw new IOException("The server closed the connection mid-response.");
        }
        _end += read;
    }

    private void ReadExactly(long length, ArrayBufferWriter<byte>? body)
    {
        while (length > 0)
        {
            if (_start == _end)
            {
                Fill();
            }
            var take = (int)Math.Min(length, _end - _start);
            body?.Write(_buffer.AsSpan(_start, take));
            _start += take;
            length -= take;
        }
    }

    private void ReadToClose(ArrayBufferWriter<byte>? body)
    {
        while (true)
        {
            body?.Write(_buffer.AsSpan(_start, _end - _start));
            _start = _end = 0;
            var read = _socket!.Receive(_buffer, 0, _buffer.Length, SocketFlags.None);
            if (read == 0)
            {
                return;
            }
            _end = read;
        }
    }

    private void ReadChunked(ArrayBufferWriter<byte>? body)
    {
        while (true)
        {
            var line = ReadLine();
            var size = ParseChunkSize(_buffer.AsSpan(line.Start, line.Length));
            if (size == 0)
            {
                // Trailers (normally none), then the empty line.
                while (ReadLine().Length > 0)
                {
                }
                return;
            }
            ReadExactly(size, body);
            if (ReadLine().Length != 0)
            {
                throw new InvalidDataException("Chunk data not followed by CRLF.");
            }
        }
    }

    /// <summary>Consumes one CRLF-terminated line and returns where it sits in the buffer (valid until the next read).</summary>
    private (int Start, int Length) ReadLine()
    {
        int lf;
        while ((lf = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n"u8)) < 0)
        {
            Fill();
        }
        var start = _start;
        _start += lf + 2;
        return (start, lf);
    }

    private static long ParseChunkSize(ReadOnlySpan<byte> line)
    {
        long size = 0;
        var digits = 0;
        foreach (var b in line)
        {
            int v = b switch
            {
                >= (byte)'0' and <= (byte)'9' => b - '0',
                >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
                >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
                _ => -1,
            };
            if (v < 0)
            {
                break; // ';' chunk extension or whitespace
            }
            size = (size << 4) | (uint)v;
            digits++;
        }
        return digits == 0 ? throw new InvalidDataException("Bad chunk size line: " + Encoding.ASCII.GetString(line)) : size;
    }

    private static int ParseStatus(ReadOnlySpan<byte> headers)
    {
        // "HTTP/1.1 200 OK"
        if (headers.Length < 12 || !headers.StartsWith("HTTP/1."u8) || headers[8] != (byte)' ')
        {
            throw new InvalidDataException("Not an HTTP/1.x response: " + Encoding.ASCII.GetString(headers[..Math.Min(headers.Length, 40)]));
        }
        var d = headers.Slice(9, 3);
        return (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    }

    private static void ParseHeader(ReadOnlySpan<byte> line, ref long contentLength, ref bool chunked, ref bool close)
    {
        var colon = line.IndexOf((byte)':');
        if (colon <= 0)
        {
            return;
        }
        var name = line[..colon];
        var value = line[(colon + 1)..].Trim((byte)' ');
        if (name.Length == 14 && Ascii.EqualsIgnoreCase(name, "Content-Length"u8))
        {
            long n = 0;
            foreach (var b in value)
            {
                n = n * 10 + (b - '0');
            }
            contentLength = n;
        }
        else if (name.Length == 17 && Ascii.EqualsIgnoreCase(name, "Transfer-Encoding"u8))
        {
            chunked = ContainsIgnoreCase(value, "chunked"u8);
        }
        else if (name.Length == 10 && Ascii.EqualsIgnoreCase(name, "Connection"u8))
        {
            close = ContainsIgnoreCase(value, "close"u8);
        }
    }

    private static bool ContainsIgnoreCase(ReadOnlySpan<byte> haystack, ReadOnlySpan<byte> needle)
    {
        for (var i = 0; i + needle.Length <= haystack.Length; i++)
        {
            if (Ascii.EqualsIgnoreCase(haystack.Slice(i, needle.Length), needle))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The bytes of a keep-alive JSON POST, encoded once.</summary>
    public static byte[] EncodePost(string host, string path, string? bearer, string jsonBody)
    {
        var body = Encoding.UTF8.GetBytes(jsonBody);
        var head = new StringBuilder()
            .Append("POST ").Append(path).Append(" HTTP/1.1\r\n")
            .Append("Host: ").Append(host).Append("\r\n");
        if (bearer is not null)
        {
            head.Append("Authorization: Bearer ").Append(bearer).Append("\r\n");
        }
        head.Append("Content-Type: application/json\r\n")
            .Append("Content-Length: ").Append(body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append("\r\n")
            .Append("\r\n");
        return [.. Encoding.ASCII.GetBytes(head.ToString()), .. body];
    }
}
