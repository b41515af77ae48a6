package riskudf.bi;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.security.sasl.AuthenticationException;
import org.apache.hive.service.auth.PasswdAuthenticationProvider;

/**
 * HiveServer2 password provider (hive.server2.authentication=CUSTOM): users and PBKDF2-SHA256
 * hashes from the file named by the system property riskudf.bi.password.file, one line per user,
 * "user:iterations:salt_hex:hash_hex" (written by python -m riskudf.bi.users). The file is read
 * at every login, so adding or removing a user needs no restart. Passwords are never logged.
 */
public final class PasswordFile implements PasswdAuthenticationProvider {
  public static final String FILE = "riskudf.bi.password.file";

  @Override
  public void Authenticate(String user, String password) throws AuthenticationException {
    String name = System.getProperty(FILE);
    if (name == null || user == null || password == null) {
      throw new AuthenticationException("riskudf BI: no password file configured");
    }
    List<String> lines;
    try {
      lines = Files.readAllLines(Paths.get(name), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new AuthenticationException("riskudf BI: password file unreadable");
    }
    for (String line : lines) {
      String[] parts = line.trim().split(":");
      if (parts.length == 4 && parts[0].equals(user) && matches(password, parts)) {
        return;
      }
    }
    throw new AuthenticationException("riskudf BI: wrong user name or password");
  }

  private static boolean matches(String password, String[] parts) {
    try {
      HexFormat hex = HexFormat.of();
      byte[] salt = hex.parseHex(parts[2]);
      byte[] expected = hex.parseHex(parts[3]);
      PBEKeySpec spec =
          new PBEKeySpec(password.toCharArray(), salt, Integer.parseInt(parts[1]), expected.length * 8);
      byte[] got = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256").generateSecret(spec).getEncoded();
      return MessageDigest.isEqual(got, expected);
    } catch (GeneralSecurityException | IllegalArgumentException e) {
      return false;
    }
  }
}
