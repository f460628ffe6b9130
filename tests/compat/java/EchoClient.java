// EchoClient PORT CONNS BYTES STAGGER_MS - CONNS connections to an echo
// server, opened STAGGER_MS apart (so some arrive while the server's event
// loop sleeps in select() with nothing else to do), each with classic
// java.net.Socket streams (the JDK's NioSocketImpl: a non-blocking socket
// and poll() inside every blocking call): a writer thread sends BYTES
// pseudo-random bytes in uneven pieces and shuts down its output, a reader
// thread reads the echo to EOF. The echo is compared with what was sent by
// SHA-256. A read that waits 15 s fails; a watchdog fails the run when no
// connection moved a byte for 20 s, saying where each one stood.
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

public final class EchoClient {
  static final class Conn {
    final int id;
    final AtomicLong sent = new AtomicLong(), got = new AtomicLong();
    final AtomicReference<String> error = new AtomicReference<>();
    volatile boolean done;

    Conn(int id) {
      this.id = id;
    }

    String state(long size) {
      return "conn " + id + ": sent " + sent + " of " + size + ", echoed back " + got
          + (done ? " (done)" : "") + (error.get() != null ? " error: " + error.get() : "");
    }
  }

  public static void main(String[] args) throws Exception {
    int port = Integer.parseInt(args[0]);
    int conns = Integer.parseInt(args[1]);
    int size = Integer.parseInt(args[2]);
    int stagger = Integer.parseInt(args[3]);
    List<Conn> all = new ArrayList<>();
    List<Thread> threads = new ArrayList<>();
    AtomicLong progress = new AtomicLong();

    Thread watchdog = new Thread(() -> {
      long last = -1, since = System.nanoTime();
      while (true) {
        try {
          Thread.sleep(500);
        } catch (InterruptedException e) {
          return;
        }
        long p = progress.get();
        if (p != last) {
          last = p;
          since = System.nanoTime();
        } else if (System.nanoTime() - since > 20_000_000_000L) {
          System.err.println("EchoClient: no byte moved for 20 s:");
          synchronized (all) {
            for (Conn c : all) System.err.println("  " + c.state(size));
          }
          Runtime.getRuntime().halt(3);
        }
      }
    }, "watchdog");
    watchdog.setDaemon(true);
    watchdog.start();

    for (int i = 0; i < conns; i++) {
      if (i > 0) Thread.sleep(stagger);
      Conn c = new Conn(i);
      synchronized (all) {
        all.add(c);
      }
      Thread t = new Thread(() -> {
        try (Socket s = new Socket()) {
          s.connect(new InetSocketAddress("127.0.0.1", port), 10000);
          s.setSoTimeout(15000);
          byte[] data = new byte[size];
          new Random(c.id * 7919L + size).nextBytes(data);
          MessageDigest want = MessageDigest.getInstance("SHA-256");
          want.update(data);
          OutputStream out = s.getOutputStream();
          Thread writer = new Thread(() -> {
            try {
              int off = 0, k = 0;
              while (off < size) {
                int n = Math.min(size - off, 1 + (k++ * 104729) % 200000);
                out.write(data, off, n);
                off += n;
                c.sent.addAndGet(n);
                progress.addAndGet(n);
              }
              s.shutdownOutput();
            } catch (Exception e) {
              c.error.compareAndSet(null, "write: " + e);
            }
          }, "writer-" + c.id);
          writer.start();
          InputStream in = s.getInputStream();
          MessageDigest have = MessageDigest.getInstance("SHA-256");
          byte[] buf = new byte[65536];
          int n;
          while ((n = in.read(buf)) > 0) {
            have.update(buf, 0, n);
            c.got.addAndGet(n);
            progress.addAndGet(n);
          }
          writer.join();
          if (c.got.get() != size)
            c.error.compareAndSet(null, "EOF after " + c.got + " of " + size + " bytes echoed");
          else if (!Arrays.equals(want.digest(), have.digest()))
            c.error.compareAndSet(null, "echo differs from what was sent (sha256)");
        } catch (Exception e) {
          c.error.compareAndSet(null, e.toString());
        }
        c.done = true;
      }, "conn-" + i);
      threads.add(t);
      t.start();
    }
    for (Thread t : threads) t.join();
    boolean ok = true;
    for (Conn c : all) {
      if (c.error.get() != null) {
        System.err.println("EchoClient: " + c.state(size));
        ok = false;
      }
    }
    if (!ok) System.exit(1);
    System.out.println("EchoClient ok: " + conns + " x " + size + " bytes echoed");
  }
}
