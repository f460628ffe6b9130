// SlowHttpClient PORT DIR CONNS ROUNDS NAME... - CONNS keep-alive
// connections at once, one thread each, every one a non-blocking
// java.nio SocketChannel with its own Selector (epoll). Each asks ROUNDS
// times for every NAME (rotated per connection, /f/ and /p/ in turn) and
// reads the answer slowly, in bursts: after every 256 KiB it sleeps 3 ms,
// so the server's writer fills the connection and must wait for room.
// Every body is compared by SHA-256 with the file DIR/NAME. A connection
// that receives nothing for 15 s fails with where it stood; exit status 0
// only when every response was complete and right.
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

public final class SlowHttpClient {
  private static final int BURST = 256 * 1024;
  private static final int PAUSE_MS = 3;
  private static final long STALL_MS = 15000;

  private static final Map<String, String> expected = new ConcurrentHashMap<>();
  private static final AtomicLong received = new AtomicLong();

  static String sha256(byte[] b, int off, int len) throws Exception {
    MessageDigest md = MessageDigest.getInstance("SHA-256");
    md.update(b, off, len);
    return HexFormat.of().formatHex(md.digest());
  }

  /** One connection's whole life; throws with a message saying where it stood. */
  static final class Conn {
    final int id;
    final int port;
    final SocketChannel ch;
    final Selector sel;
    final ByteBuffer buf = ByteBuffer.allocateDirect(65536);
    long sinceBurst = 0;
    String where = "connecting";

    Conn(int id, int port) throws IOException {
      this.id = id;
      this.port = port;
      buf.limit(0); // nothing read yet
      ch = SocketChannel.open();
      ch.configureBlocking(false);
      sel = Selector.open();
    }

    /** Waits for OPS; fails when nothing happens for STALL_MS. */
    void await(int ops) throws IOException {
      SelectionKey k = ch.keyFor(sel);
      if (k == null) k = ch.register(sel, ops);
      else k.interestOps(ops);
      if (sel.select(STALL_MS) == 0)
        throw new IOException("conn " + id + ": stalled " + STALL_MS + " ms while " + where);
      sel.selectedKeys().clear();
    }

    void connect() throws IOException {
      if (!ch.connect(new InetSocketAddress("127.0.0.1", port))) {
        while (!ch.finishConnect()) await(SelectionKey.OP_CONNECT);
      }
    }

    void writeAll(ByteBuffer b) throws IOException {
      while (b.hasRemaining()) {
        if (ch.write(b) == 0) await(SelectionKey.OP_WRITE);
      }
    }

    /** Some bytes into buf (flipped for reading); -1 at EOF. Sleeps between bursts. */
    int readSome() throws Exception {
      if (sinceBurst >= BURST) {
        Thread.sleep(PAUSE_MS);
        sinceBurst = 0;
      }
      buf.clear();
      int n;
      while ((n = ch.read(buf)) == 0) await(SelectionKey.OP_READ);
      buf.flip();
      if (n > 0) {
        sinceBurst += n;
        received.addAndGet(n);
      }
      return n;
    }

    void get(String prefix, String name) throws Exception {
      String req = "GET " + prefix + name + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: xio-compat\r\n\r\n";
      where = "sending GET " + prefix + name;
      writeAll(ByteBuffer.wrap(req.getBytes(StandardCharsets.US_ASCII)));
      // Headers, byte by byte out of the buffer until the blank line; the
      // rest of the buffer is body.
      ByteArrayOutputStream head = new ByteArrayOutputStream();
      where = "reading the headers of " + prefix + name;
      while (true) {
        if (!buf.hasRemaining() && readSome() < 0)
          throw new IOException("conn " + id + ": EOF in the headers of " + prefix + name);
        head.write(buf.get());
        int n = head.size();
        byte[] h = head.toByteArray();
        if (n >= 4 && h[n - 4] == '\r' && h[n - 3] == '\n' && h[n - 2] == '\r' && h[n - 1] == '\n') break;
      }
      String hs = head.toString(StandardCharsets.ISO_8859_1);
      if (!hs.startsWith("HTTP/1.1 200 "))
        throw new IOException("conn " + id + ": " + prefix + name + ": " + hs.lines().findFirst().orElse(""));
      long len = -1;
      for (String line : hs.split("\r\n")) {
        int c = line.indexOf(':');
        if (c > 0 && line.substring(0, c).trim().equalsIgnoreCase("content-length"))
          len = Long.parseLong(line.substring(c + 1).trim());
      }
      if (len < 0) throw new IOException("conn " + id + ": no Content-Length in " + hs);
      byte[] body = new byte[(int) len];
      int got = 0;
      while (got < len) {
        where = "reading " + prefix + name + " at byte " + got + " of " + len;
        if (!buf.hasRemaining() && readSome() < 0)
          throw new IOException("conn " + id + ": EOF at byte " + got + " of " + len + " of " + prefix + name);
        int n = Math.min(buf.remaining(), (int) len - got);
        buf.get(body, got, n);
        got += n;
      }
      if (buf.hasRemaining())
        throw new IOException("conn " + id + ": " + buf.remaining() + " stray bytes after " + prefix + name);
      String sum = sha256(body, 0, body.length);
      if (!sum.equals(expected.get(name)))
        throw new IOException("conn " + id + ": " + prefix + name + " differs: sha256 " + sum + ", want " + expected.get(name));
    }
  }

  public static void main(String[] args) throws Exception {
    int port = Integer.parseInt(args[0]);
    Path dir = Path.of(args[1]);
    int conns = Integer.parseInt(args[2]);
    int rounds = Integer.parseInt(args[3]);
    List<String> names = Arrays.asList(Arrays.copyOfRange(args, 4, args.length));
    for (String n : names) {
      byte[] b = Files.readAllBytes(dir.resolve(n));
      expected.put(n, sha256(b, 0, b.length));
    }
    List<Thread> threads = new ArrayList<>();
    List<String> failures = java.util.Collections.synchronizedList(new ArrayList<>());
    AtomicLong responses = new AtomicLong();
    for (int i = 0; i < conns; i++) {
      final int id = i;
      Thread t = new Thread(() -> {
        try {
          Conn c = new Conn(id, port);
          try {
            c.connect();
            for (int r = 0; r < rounds; r++) {
              for (int j = 0; j < names.size(); j++) {
                String name = names.get((j + id) % names.size());
                c.get((r + j + id) % 2 == 0 ? "/f/" : "/p/", name);
                responses.incrementAndGet();
              }
            }
          } finally {
            c.ch.close();
            c.sel.close();
          }
        } catch (Exception e) {
          failures.add(e.getMessage() != null ? e.getMessage() : e.toString());
        }
      }, "conn-" + i);
      threads.add(t);
      t.start();
    }
    for (Thread t : threads) t.join();
    if (!failures.isEmpty()) {
      for (String f : failures) System.err.println("SlowHttpClient: " + f);
      System.exit(1);
    }
    System.out.println("SlowHttpClient ok: " + responses + " responses on " + conns
        + " connections, " + received + " bytes read in bursts of " + BURST);
  }
}
